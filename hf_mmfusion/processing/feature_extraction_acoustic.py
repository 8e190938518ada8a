# Copyright 2026 The hf_mmfusion Authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Acoustic frames: pre-computed features as they are, or frames computed here from a waveform.

``AcousticFeatureExtractor`` turns raw waveforms into frames: a waveform at any sampling rate is
resampled to ``sampling_rate`` (polyphase filtering, ``scipy.signal.resample_poly``) and becomes log-mel or
MFCC frames with a 25 ms Hann window every 10 ms, that is ``frames_per_second = 100`` frames a second;
a waveform of ``n`` samples gives ``1 + n // hop_length`` frames (the window is centred on each frame time).

It also computes the descriptors people train on: openSMILE eGeMAPSv02 (25) or ComParE 2016 (65) low-level
descriptors at 100 frames a second (``raw_features="egemaps"`` / ``"compare"``, the ``audio`` extra), or the
hidden states of any transformers audio encoder (``raw_features="pretrained"``: wav2vec2, HuBERT, WavLM,
Whisper's encoder). A path to a video file is an audio input too: its audio track is decoded with PyAV.
"""

from __future__ import annotations

import os

import numpy as np
from transformers.audio_utils import mel_filter_bank, spectrogram, window_function
from transformers.feature_extraction_utils import BatchFeature

from .feature_extraction_mmfusion import FrameFeatureExtractor, check_rate
from .media import (
    OPENSMILE_SETS,
    encode_audio,
    encoder_sampling_rate,
    encoder_width,
    opensmile_frames,
    read_audio,
    resample,
    to_mono,
)

RAW_AUDIO_FEATURES = ("log_mel", "mfcc", "egemaps", "compare", "pretrained")
# Widths of the frames each kind gives when the config does not say (the first two are the historic defaults).
DEFAULT_AUDIO_WIDTH = {"log_mel": 74, "mfcc": 74, **{k: w for k, (_, w) in OPENSMILE_SETS.items()}}


class AcousticFeatureExtractor(FrameFeatureExtractor):
    r"""
    Acoustic frames (pre-computed COVAREP / eGeMAPS / log-mel, or computed here from a waveform) ->
    ``audio_features`` / ``audio_attention_mask``.

    Args:
        feature_size (`int`, *optional*):
            Width of one acoustic frame (74 for COVAREP on CMU-MOSEI, 5 on the MMSA CMU-MOSI subset, 33 for
            CH-SIMS). For waveforms it is the number of mel bins (``raw_features="log_mel"``) or of cepstral
            coefficients (``"mfcc"``); openSMILE sets and encoders fix it (25 for eGeMAPS, 65 for ComParE, the
            encoder's hidden size). Defaults to 74, or to the width of the chosen descriptor set / encoder.
        sampling_rate (`int`, *optional*, defaults to 16000):
            Rate waveforms are resampled to before framing (encoders use their own feature extractor's rate).
        raw_features (`str`, *optional*, defaults to `"log_mel"`):
            Frames computed from waveforms:

            - ``"log_mel"`` / ``"mfcc"``: natural-log mel energies or MFCCs (DCT-II of the log-mel energies);
            - ``"egemaps"`` / ``"compare"``: openSMILE eGeMAPSv02 (25) / ComParE 2016 (65) low-level descriptors,
              100 frames a second (``pip install opensmile``, or the ``audio`` extra; openSMILE is free for
              research and needs a commercial licence otherwise);
            - ``"pretrained"``: hidden state ``pretrained_layer`` of the transformers audio encoder
              ``pretrained_model_name_or_path`` (wav2vec2, HuBERT, WavLM, Whisper's encoder), batched.
        pretrained_model_name_or_path (`str`, *optional*):
            Hub id or directory of the audio encoder (``raw_features="pretrained"``).
        pretrained_layer (`int`, *optional*, defaults to -1):
            Hidden state used as frames (0 = the input embeddings, -1 = the last layer).
        pretrained_batch_size (`int`, *optional*, defaults to 8):
            Waveforms per encoder call.
        num_mel_bins (`int`, *optional*):
            Mel filters; defaults to ``feature_size`` for log-mel and ``max(40, feature_size)`` for MFCC.
        frame_length_ms, hop_length_ms (`float`, *optional*, defaults to 25 and 10):
            Analysis window and hop; 10 ms gives 100 frames a second.
        min_frequency, max_frequency (`float`, *optional*, defaults to 20 and ``sampling_rate / 2``):
            Band covered by the mel filters.
        padding_value, return_attention_mask, non_finite, do_normalize, feature_mean, feature_std,
        normalization_eps, normalization_clip, feature_source: see the shared options above.

    Waveforms are recognised by passing ``sampling_rate=`` to the call, or as paths: a ``.wav`` file or any
    file with an audio track PyAV decodes (a video's sound); without either the inputs must be frame features
    of width ``feature_size``. Multi-channel audio is mixed to mono (the mean of the channels).
    """

    modality = "audio"
    model_input_names = ["audio_features", "audio_attention_mask"]
    raw_media = "a recording"
    default_raw_features = "log_mel"

    def __init__(
        self,
        feature_size: int | None = None,
        sampling_rate: int = 16000,
        raw_features: str = "log_mel",
        num_mel_bins: int | None = None,
        frame_length_ms: float = 25.0,
        hop_length_ms: float = 10.0,
        min_frequency: float = 20.0,
        max_frequency: float | None = None,
        pretrained_model_name_or_path: str | None = None,
        pretrained_layer: int = -1,
        pretrained_batch_size: int = 8,
        **kwargs,
    ):
        if raw_features not in RAW_AUDIO_FEATURES:
            raise ValueError(f"raw_features must be one of {RAW_AUDIO_FEATURES}, got {raw_features!r}")
        if raw_features == "pretrained" and not pretrained_model_name_or_path:
            raise ValueError("raw_features='pretrained' needs pretrained_model_name_or_path (a Hub id or directory)")
        if feature_size is None:
            feature_size = (
                encoder_width(pretrained_model_name_or_path) if raw_features == "pretrained" else DEFAULT_AUDIO_WIDTH[raw_features]
            )
        if raw_features in OPENSMILE_SETS and int(feature_size) != OPENSMILE_SETS[raw_features][1]:
            raise ValueError(
                f"raw_features={raw_features!r} gives {OPENSMILE_SETS[raw_features][1]} descriptors a frame, "
                f"but feature_size={feature_size}"
            )
        if int(pretrained_batch_size) < 1:
            raise ValueError(f"pretrained_batch_size must be at least 1, got {pretrained_batch_size}")
        super().__init__(feature_size=feature_size, sampling_rate=sampling_rate, **kwargs)
        self.raw_features = raw_features
        self.num_mel_bins = num_mel_bins
        self.frame_length_ms = float(frame_length_ms)
        self.hop_length_ms = float(hop_length_ms)
        self.min_frequency = float(min_frequency)
        self.max_frequency = None if max_frequency is None else float(max_frequency)
        self.pretrained_model_name_or_path = (
            None if pretrained_model_name_or_path is None else os.fspath(pretrained_model_name_or_path)
        )
        self.pretrained_layer = int(pretrained_layer)
        self.pretrained_batch_size = int(pretrained_batch_size)

    # Derived framing parameters (not stored in the config; recomputed from it).
    @property
    def hop_length(self) -> int:
        return int(round(self.sampling_rate * self.hop_length_ms / 1000.0))

    @property
    def frame_length(self) -> int:
        return int(round(self.sampling_rate * self.frame_length_ms / 1000.0))

    @property
    def frames_per_second(self) -> float:
        """Frames a second of the log-mel / MFCC / openSMILE frames (encoders have their own rate)."""
        if self.raw_features in OPENSMILE_SETS:
            return 100.0                                          # openSMILE's low-level descriptors: every 10 ms
        return self.sampling_rate / self.hop_length

    def _mel_bins(self) -> int:
        if self.num_mel_bins is not None:
            return int(self.num_mel_bins)
        return self.feature_size if self.raw_features == "log_mel" else max(40, self.feature_size)

    def _filters(self):
        key = (self.sampling_rate, self.frame_length, self._mel_bins(), self.min_frequency, self.max_frequency)
        cached = getattr(self, "_filter_cache", None)
        if cached is None or cached[0] != key:
            fft_length = 1 << (self.frame_length - 1).bit_length()
            mel = mel_filter_bank(
                num_frequency_bins=fft_length // 2 + 1,
                num_mel_filters=self._mel_bins(),
                min_frequency=self.min_frequency,
                max_frequency=self.max_frequency or self.sampling_rate / 2,
                sampling_rate=self.sampling_rate,
                norm="slaney",
                mel_scale="slaney",
            )
            window = window_function(self.frame_length, "hann")
            self._filter_cache = (key, fft_length, mel, window)
        return self._filter_cache[1:]

    def _mono_at(self, waveform, sampling_rate: int, target: int, where: str = "audio") -> np.ndarray:
        rate = int(check_rate(sampling_rate, f"the sampling rate of `{where}`", whole=True))
        return resample(to_mono(waveform, where), rate, int(target))

    def _encoder_rate(self) -> int:
        return encoder_sampling_rate(self.pretrained_model_name_or_path)

    def waveforms_to_frames(self, waveforms: list, where: str = "audio") -> list[np.ndarray]:
        """``[(waveform, sampling_rate), ...]`` -> one ``[frames, feature_size]`` float32 array each; encoders
        see the whole list in batches."""
        self.check_raw_media(where)
        if self.raw_features != "pretrained":
            return [self.waveform_to_frames(wav, rate) for wav, rate in waveforms]
        target = self._encoder_rate()
        monos = [self._mono_at(wav, rate, target, f"{where}[{i}]") for i, (wav, rate) in enumerate(waveforms)]
        frames = encode_audio(
            monos, self.pretrained_model_name_or_path, layer=self.pretrained_layer, batch_size=self.pretrained_batch_size
        )
        if frames and frames[0].shape[1] != self.feature_size:
            raise ValueError(
                f"`{where}`: {self.pretrained_model_name_or_path!r} gives {frames[0].shape[1]}-wide frames but this "
                f"extractor has feature_size={self.feature_size}"
            )
        return frames

    def waveform_to_frames(self, waveform, sampling_rate: int) -> np.ndarray:
        """``waveform`` (``[samples]``, or ``[samples, channels]`` / ``[channels, samples]``, mixed to mono;
        integer PCM is scaled to [-1, 1]) at ``sampling_rate`` -> ``[frames, feature_size]`` float32 frames.

        Log-mel / MFCC: ``1 + n // hop_length`` frames, where ``n`` is the length after resampling to
        ``self.sampling_rate``. openSMILE: 100 frames a second (a frame every 10 ms that fits the clip).
        Encoders: their own frame rate (50 a second for wav2vec2-style models and Whisper).
        """
        self.check_raw_media("audio")
        if self.raw_features == "pretrained":
            return self.waveforms_to_frames([(waveform, sampling_rate)])[0]
        wav = self._mono_at(waveform, sampling_rate, self.sampling_rate)
        if self.raw_features in OPENSMILE_SETS:
            return opensmile_frames(wav, self.sampling_rate, self.raw_features)
        from scipy.fft import dct

        if self.raw_features == "mfcc" and self.feature_size > self._mel_bins():
            raise ValueError(
                f"MFCC frames of width feature_size={self.feature_size} need at least as many mel bins, "
                f"got num_mel_bins={self._mel_bins()}"
            )
        fft_length, mel, window = self._filters()
        if wav.size < self.frame_length // 2 + 1:
            # Reflection padding needs a few samples; very short clips are zero-extended instead.
            wav = np.pad(wav, (0, self.frame_length // 2 + 1 - wav.size))
        log_mel = spectrogram(
            wav,
            window,
            frame_length=self.frame_length,
            hop_length=self.hop_length,
            fft_length=fft_length,
            power=2.0,
            mel_filters=mel,
            mel_floor=1e-10,
            log_mel="log",
        ).T  # [frames, mel bins]
        if self.raw_features == "mfcc":
            log_mel = dct(log_mel, type=2, axis=1, norm="ortho")[:, : self.feature_size]
        return np.ascontiguousarray(log_mel, dtype=np.float32)

    def _waveform_from_input(self, sample, index: int, sampling_rate: int | None):
        """``(waveform, rate)`` for a path or a waveform, ``None`` for frame features."""
        if isinstance(sample, (str, os.PathLike)):
            self.check_raw_media(f"audio[{index}]")
            return read_audio(sample, where=f"audio[{index}]")
        if sampling_rate is not None:
            self.check_raw_media(f"audio[{index}]")
            return sample, int(check_rate(sampling_rate, "sampling_rate", whole=True))
        return None

    def _frames_from_input(self, sample, index: int, sampling_rate: int | None = None, **kwargs) -> np.ndarray:
        waveform = self._waveform_from_input(sample, index, sampling_rate)
        if waveform is None:
            return self._as_frames(sample, index)
        return self.waveform_to_frames(*waveform)

    def _frames_from_inputs(self, samples: list, sampling_rate: int | None = None, **kwargs) -> list[np.ndarray]:
        if self.raw_features != "pretrained":
            return super()._frames_from_inputs(samples, sampling_rate=sampling_rate, **kwargs)
        waves = {i: self._waveform_from_input(s, i, sampling_rate) for i, s in enumerate(samples)}
        raw = [i for i, w in waves.items() if w is not None]
        encoded = dict(zip(raw, self.waveforms_to_frames([waves[i] for i in raw])))
        return [encoded[i] if i in encoded else self._as_frames(s, i) for i, s in enumerate(samples)]

    def _split_batch(self, inputs) -> list:
        if isinstance(inputs, (str, os.PathLike)):
            return [inputs]
        return super()._split_batch(inputs)

    def __call__(self, inputs, *args, sampling_rate: int | None = None, **kwargs) -> BatchFeature:
        """As the shared ``__call__``; with ``sampling_rate`` the inputs are waveforms: one array (``[samples]``,
        or one multi-channel ``[samples, channels]`` waveform) or a list of them. Paths to ``.wav`` files
        are read directly (their own rate is used)."""
        if sampling_rate is not None:
            if not isinstance(inputs, (list, tuple)):
                inputs = [inputs]
            elif inputs and isinstance(inputs[0], (int, float, np.number)):
                inputs = [np.asarray(inputs)]  # one waveform given as a list of samples
        return super().__call__(inputs, *args, sampling_rate=sampling_rate, **kwargs)
