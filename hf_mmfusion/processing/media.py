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
"""Raw media for the feature extractors: decoding, openSMILE descriptors, pretrained encoders, face crops.

Every heavy dependency is optional and imported on first use, with an error that names the install
command: PyAV (``video`` extra) decodes video files and the audio track of any container, ``opensmile``
(``audio`` extra) computes eGeMAPS / ComParE descriptors, ``opencv-python-headless`` (``face`` extra) finds
faces with the Haar cascades it ships. Pretrained encoders are transformers models loaded with the Auto
classes and kept in a small cache, so every extractor (and every reload of a processor) naming the same
model shares one copy.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
import struct
from collections.abc import Sequence

import numpy as np

WAV_SUFFIXES = (".wav",)
OPENSMILE_SETS = {"egemaps": ("eGeMAPSv02", 25), "compare": ("ComParE_2016", 65)}


def require(module: str, package: str, extra: str):
    """Import ``module`` or explain how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"this feature needs the `{package}` package: `pip install {package}` (it is hf_mmfusion's "
            f"`{extra}` extra: `pip install -e \".[{extra}]\"` in a clone of the repository)"
        ) from err


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# ---------------------------------------------------------------------------------------------- files
def check_media_file(path: str | os.PathLike, where: str, kind: str = "file") -> str:
    """``path`` as a string, or a ``ValueError`` naming ``where`` when it is missing or a folder."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"`{where}`: {path!r} is a folder, not a {kind}; pass the path of one {kind}")
    if not os.path.isfile(path):
        raise ValueError(f"`{where}`: {kind} {path!r} does not exist")
    return path


# ---------------------------------------------------------------------------------------------- audio
def pcm_to_float(wav: np.ndarray) -> np.ndarray:
    """Integer PCM samples scaled to [-1, 1]; unsigned formats (8-bit WAV) are centred on their midpoint
    first. Float samples are returned as they are."""
    if not np.issubdtype(wav.dtype, np.integer):
        return wav
    info = np.iinfo(wav.dtype)
    half = (float(info.max) - float(info.min) + 1.0) / 2.0                # 128 for 8-bit, 32768 for 16-bit
    centre = float(info.min) + half                                      # 0 for signed, 128 for 8-bit
    return (wav.astype(np.float64) - centre) / half


def to_mono(waveform, where: str = "audio") -> np.ndarray:
    """``[samples]``, ``[samples, channels]`` or ``[channels, samples]`` (the short axis is the channels;
    integer PCM is scaled to [-1, 1]) -> float64 ``[samples]``, the mean of the channels."""
    wav = pcm_to_float(np.asarray(waveform.detach().cpu().numpy() if hasattr(waveform, "detach") else waveform))
    wav = wav.astype(np.float64)
    if wav.ndim == 2:
        wav = wav.mean(axis=1) if wav.shape[1] <= wav.shape[0] else wav.mean(axis=0)
    if wav.ndim != 1 or wav.size == 0:
        raise ValueError(
            f"`{where}` waveform must be [samples] or [samples, channels] with samples > 0, got {list(wav.shape)}"
        )
    if not np.isfinite(wav).all():
        raise ValueError(f"`{where}` waveform contains NaN or infinite samples")
    return wav


def resample(wav: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Polyphase resampling of a mono waveform (``scipy.signal.resample_poly``)."""
    rate, target = int(rate), int(target)
    if rate <= 0:
        raise ValueError(f"sampling_rate must be positive, got {rate}")
    if rate == target:
        return wav
    from scipy.signal import resample_poly

    g = math.gcd(rate, target)
    return resample_poly(wav, target // g, rate // g)


def read_audio(path: str | os.PathLike, where: str = "audio") -> tuple[np.ndarray, int]:
    """A ``.wav`` file, or the first audio track of any container PyAV reads (``.mp4``, ``.mkv``, ``.mp3``,
    ...) -> (``[samples, channels]`` waveform, its sampling rate)."""
    path = check_media_file(path, where)
    if path.lower().endswith(WAV_SUFFIXES):
        from scipy.io import wavfile

        try:
            rate, wav = wavfile.read(path)
        except (ValueError, OSError, EOFError, struct.error) as err:
            raise ValueError(f"`{where}`: cannot read WAV file {path!r}: {err or type(err).__name__}") from err
        return (wav if wav.ndim == 2 else wav[:, None]), int(rate)
    av = require("av", "av", "video")
    chunks, rate = [], None
    try:
        with av.open(path) as container:
            if not container.streams.audio:
                raise ValueError(f"`{where}`: {path!r} has no audio track")
            stream = container.streams.audio[0]
            for frame in container.decode(stream):
                samples = frame.to_ndarray()
                rate = frame.sample_rate
                if frame.format.is_planar:
                    chunks.append(samples.T)                                  # [channels, n] -> [n, channels]
                else:
                    chunks.append(samples.reshape(-1, len(frame.layout.channels)))
    except av.error.FFmpegError as err:
        raise ValueError(f"`{where}`: cannot decode {path!r} ({err})") from err
    if not chunks:
        raise ValueError(f"`{where}`: the audio track of {path!r} has no decodable sample")
    wav = pcm_to_float(np.concatenate(chunks, axis=0))
    return wav.astype(np.float32, copy=False), int(rate)


@functools.lru_cache(maxsize=4)
def _smile(feature_set: str):
    opensmile = require("opensmile", "opensmile", "audio")
    return opensmile.Smile(
        feature_set=getattr(opensmile.FeatureSet, feature_set),
        feature_level=opensmile.FeatureLevel.LowLevelDescriptors,
    )


def opensmile_frames(wav: np.ndarray, rate: int, kind: str) -> np.ndarray:
    """openSMILE low-level descriptors (``kind`` ``"egemaps"``: eGeMAPSv02, 25 a frame; ``"compare"``:
    ComParE 2016, 65 a frame), 100 frames a second, of a mono waveform -> float32 ``[frames, width]``."""
    import warnings

    feature_set, _ = OPENSMILE_SETS[kind]
    with warnings.catch_warnings():
        # openSMILE warns about clips shorter than one window and gives NaN rows; those are cleaned later.
        warnings.simplefilter("ignore", UserWarning)
        table = _smile(feature_set).process_signal(np.asarray(wav, dtype=np.float32)[None, :], int(rate))
    return np.ascontiguousarray(table.to_numpy(dtype=np.float32))


def _model_width(config) -> int:
    for sub in ("vision_config", "audio_config", "encoder_config"):
        if getattr(config, sub, None) is not None:
            config = getattr(config, sub)
            break
    for name in ("hidden_size", "d_model", "embed_dim"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    sizes = getattr(config, "hidden_sizes", None)
    if sizes:
        return int(sizes[-1])
    raise ValueError(f"cannot tell the output width of a {type(config).__name__}; pass feature_size= explicitly")


def encoder_width(name_or_path: str) -> int:
    """Width of the hidden states of the encoder ``name_or_path`` (from its config alone)."""
    from transformers import AutoConfig

    return _model_width(AutoConfig.from_pretrained(name_or_path))


def _forward_kwargs(module, inputs: dict) -> dict:
    names = set(inspect.signature(module.forward).parameters)
    return {k: v for k, v in inputs.items() if k in names}


@functools.lru_cache(maxsize=4)
def load_audio_encoder(name_or_path: str, device: str):
    """(feature extractor, encoder module in eval mode) of a transformers audio model; encoder-decoder
    models (Whisper) give their encoder."""
    from transformers import AutoFeatureExtractor, AutoModel

    feature_extractor = AutoFeatureExtractor.from_pretrained(name_or_path)
    model = AutoModel.from_pretrained(name_or_path)
    if getattr(model.config, "is_encoder_decoder", False):
        model = model.get_encoder()
    return feature_extractor, model.eval().to(device)


def _layer(out, layer: int, name_or_path: str):
    """Hidden state ``layer``; -1 is the model's final output (after its last norm, which the tuple of
    hidden states of pre-norm models such as ViT or stable-layer-norm wav2vec2 lacks)."""
    if layer == -1 and getattr(out, "last_hidden_state", None) is not None:
        return out.last_hidden_state
    states = getattr(out, "hidden_states", None) or ()
    if not -len(states) <= layer < len(states):
        raise ValueError(
            f"pretrained_layer={layer} is out of range: {name_or_path!r} has {len(states)} hidden states "
            "(0 = embeddings, -1 = the final output)"
        )
    return states[layer]


def _output_lengths(model, lengths: Sequence[int], total_in: int, total_out: int) -> list[int]:
    import torch

    compute = getattr(model, "_get_feat_extract_output_lengths", None)
    if compute is not None:
        out = compute(torch.as_tensor(list(lengths)))
        return [min(int(n), total_out) for n in out]
    return [min(total_out, max(1, math.ceil(total_out * n / total_in))) for n in lengths]


def encode_audio(
    waves: Sequence[np.ndarray], name_or_path: str, layer: int = -1, batch_size: int = 8, device: str | None = None
) -> list[np.ndarray]:
    """Frame features of mono waveforms (already at the encoder's sampling rate) from hidden state
    ``layer`` of a pretrained audio encoder: one float32 ``[frames, width]`` array per waveform.

    Waveforms are batched by length; padded positions are cut from the outputs. Models that take fixed
    windows (Whisper: 30 s of log-mel input) see each waveform in consecutive windows, trimmed to the
    frames the real samples cover.
    """
    import torch

    device = device or default_device()
    feature_extractor, model = load_audio_encoder(name_or_path, device)
    rate = int(feature_extractor.sampling_rate)
    window = getattr(feature_extractor, "n_samples", None)                  # fixed-window models
    pieces: list[tuple[int, np.ndarray]] = []
    for i, wav in enumerate(waves):
        wav = np.asarray(wav, dtype=np.float32)
        if window:
            pieces += [(i, wav[s : s + window]) for s in range(0, max(len(wav), 1), window)]
        else:
            pieces.append((i, wav))
    order = sorted(range(len(pieces)), key=lambda k: len(pieces[k][1]))
    outputs: dict[int, np.ndarray] = {}
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = [pieces[k][1] for k in order[start : start + batch_size]]
            inputs = feature_extractor(chunk, sampling_rate=rate, padding="max_length" if window else True, return_tensors="pt")
            inputs = {k: v.to(device) for k, v in _forward_kwargs(model, dict(inputs)).items()}
            out = model(**inputs, output_hidden_states=layer != -1)
            hidden = _layer(out, layer, name_or_path).float().cpu().numpy()
            if window:
                # Fixed windows: the frames a window's real samples cover, in proportion.
                lengths = [min(hidden.shape[1], max(1, math.ceil(hidden.shape[1] * len(c) / window))) for c in chunk]
            else:
                lengths = _output_lengths(model, [len(c) for c in chunk], max(len(c) for c in chunk), hidden.shape[1])
            for row, k, n in zip(hidden, order[start : start + batch_size], lengths):
                outputs[k] = row[:n]
    frames: list[list[np.ndarray]] = [[] for _ in waves]
    for k, (i, _) in enumerate(pieces):
        frames[i].append(outputs[k])
    return [np.ascontiguousarray(np.concatenate(parts, axis=0), dtype=np.float32) for parts in frames]


def encoder_sampling_rate(name_or_path: str, device: str | None = None) -> int:
    return int(load_audio_encoder(name_or_path, device or default_device())[0].sampling_rate)


# ---------------------------------------------------------------------------------------------- vision
@functools.lru_cache(maxsize=4)
def load_vision_encoder(name_or_path: str, device: str):
    """(image processor, vision module in eval mode); dual-encoder models (CLIP, SigLIP) give their
    vision tower."""
    from transformers import AutoImageProcessor, AutoModel

    processor = AutoImageProcessor.from_pretrained(name_or_path)
    model = AutoModel.from_pretrained(name_or_path)
    model = getattr(model, "vision_model", None) or model
    return processor, model.eval().to(device)


VISUAL_POOLING = ("cls", "mean", "pooler")


def encode_images(
    images: Sequence[np.ndarray],
    name_or_path: str,
    layer: int = -1,
    pooling: str = "cls",
    batch_size: int = 32,
    device: str | None = None,
) -> np.ndarray:
    """One embedding per RGB image (``[H, W, 3]`` uint8) from a pretrained vision encoder -> float32
    ``[images, width]``: the first token (``"cls"``) or the mean over tokens / positions (``"mean"``) of
    hidden state ``layer``, or the model's own pooled output (``"pooler"``)."""
    import torch

    device = device or default_device()
    processor, model = load_vision_encoder(name_or_path, device)
    rows = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = processor(images=list(images[start : start + batch_size]), return_tensors="pt")
            inputs = {k: v.to(device) for k, v in _forward_kwargs(model, dict(batch)).items()}
            out = model(**inputs, output_hidden_states=pooling != "pooler" and layer != -1)
            if pooling == "pooler":
                hidden = getattr(out, "pooler_output", None)
                if hidden is None:
                    raise ValueError(f"{name_or_path!r} has no pooled output; use pretrained_pooling='cls' or 'mean'")
                hidden = hidden.reshape(hidden.shape[0], -1)
            else:
                hidden = _layer(out, layer, name_or_path)
                if hidden.ndim == 4:                                          # convolutional maps [B, C, H, W]
                    hidden = hidden.mean(dim=(2, 3))
                else:
                    hidden = hidden[:, 0] if pooling == "cls" else hidden.mean(dim=1)
            rows.append(hidden.float().cpu().numpy())
    return np.ascontiguousarray(np.concatenate(rows, axis=0), dtype=np.float32)


@functools.lru_cache(maxsize=1)
def _face_detector():
    cv2 = require("cv2", "opencv-python-headless", "face")
    path = os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")
    detector = cv2.CascadeClassifier(path)
    if detector.empty():
        raise ImportError(
            f"OpenCV's frontal-face Haar cascade is missing ({path}); "
            "`pip install 'opencv-python-headless>=4.8,<5'` ships it"
        )
    return cv2, detector


def crop_face(rgb: np.ndarray, margin: float = 0.2, min_size: int = 30, detect_width: int = 320) -> np.ndarray | None:
    """The largest frontal face of an RGB frame, widened by ``margin`` of its size on each side, or
    ``None`` when there is none. Detection runs on a copy at most ``detect_width`` pixels wide."""
    cv2, detector = _face_detector()
    height, width = rgb.shape[:2]
    scale = min(1.0, detect_width / float(width))
    gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        gray = cv2.resize(gray, (int(round(width * scale)), int(round(height * scale))), interpolation=cv2.INTER_AREA)
    size = max(8, int(round(min_size * scale)))
    faces = detector.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(size, size))
    if len(faces) == 0:
        return None
    x, y, w, h = (np.asarray(max(faces, key=lambda f: f[2] * f[3]), dtype=np.float64) / scale).tolist()
    dx, dy = w * margin, h * margin
    x0, y0 = max(0, int(x - dx)), max(0, int(y - dy))
    x1, y1 = min(width, int(math.ceil(x + w + dx))), min(height, int(math.ceil(y + h + dy)))
    return np.ascontiguousarray(rgb[y0:y1, x0:x1])


# ---------------------------------------------------------------------------------------------- video
def _sample_indices(times: np.ndarray, duration: float, sampling_rate: float) -> np.ndarray:
    """Index of the frame on screen at each sampling time ``k / sampling_rate`` (at least one)."""
    count = max(1, int(np.floor(duration * sampling_rate + 1e-6)))
    targets = np.arange(count) / float(sampling_rate)
    return np.clip(np.searchsorted(times, targets + 1e-9, side="right") - 1, 0, len(times) - 1)


def sample_video(path: str, sampling_rate: float, transform=None, where: str = "visual") -> list:
    """Decode a video file with PyAV and return ``transform(rgb)`` (the ``[H, W, 3]`` uint8 frame itself
    without a transform) of the frame on screen at every sampling time ``k / sampling_rate`` of the clip:
    ``floor(duration * sampling_rate)`` entries, at least one. Frames are decoded one at a time and only
    sampled ones are converted and transformed (once each), so memory stays flat."""
    path = check_media_file(path, where, "video file")
    av = require("av", "av", "video")
    transform = transform or (lambda rgb: rgb)
    step = 1.0 / float(sampling_rate)
    out: list = []
    previous, described = None, None
    first_time, last_time = None, 0.0
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise ValueError(f"`{where}`: {path!r} has no video stream")
            stream = container.streams.video[0]
            # A stream without a rate is timed as if it ran at the sampling rate.
            rate = float(stream.average_rate) if stream.average_rate else float(sampling_rate)
            for index, frame in enumerate(container.decode(stream)):
                time = index / rate if frame.time is None else float(frame.time)
                first_time = time if first_time is None else first_time
                time -= first_time
                # The previous frame was on screen at every sampling time before this frame's time.
                while previous is not None and len(out) * step + 1e-9 < time:
                    if described is None:
                        described = (transform(previous.to_ndarray(format="rgb24")),)
                    out.append(described[0])
                previous, described = frame, None
                last_time = time
    except av.error.FFmpegError as err:
        raise ValueError(f"`{where}`: cannot decode video file {path!r} ({err})") from err
    if previous is None:
        raise ValueError(f"`{where}`: video file {path!r} has no decodable frame")
    count = max(1, int(np.floor((last_time + 1.0 / rate) * sampling_rate + 1e-6)))
    if len(out) < count:
        out += [transform(previous.to_ndarray(format="rgb24"))] * (count - len(out))
    return out[:count]


def sample_pixels(pixels: np.ndarray, video_fps: float, sampling_rate: float) -> np.ndarray:
    """``[frames, H, W, 3]`` pixels shown at ``video_fps`` -> the frames at ``sampling_rate``."""
    times = np.arange(len(pixels)) / float(video_fps)
    return pixels[_sample_indices(times, len(pixels) / float(video_fps), sampling_rate)]


# ---------------------------------------------------------------------------------------------- speech
@functools.lru_cache(maxsize=2)
def load_asr(name_or_path: str, device: str):
    from transformers import pipeline

    return pipeline("automatic-speech-recognition", model=name_or_path, device=device)


def transcribe(
    waves: Sequence[np.ndarray], sampling_rate: int, name_or_path: str, timestamps: str | bool | None = "word",
    batch_size: int = 8, device: str | None = None,
) -> list[dict]:
    """Transcripts of mono waveforms with a transformers ASR pipeline (Whisper-style models): one
    ``{"text": str, "chunks": [{"text", "timestamp": (start, end)}, ...]}`` per waveform; ``chunks`` are
    words with ``timestamps="word"``, segments with ``True``, empty without timestamps."""
    pipe = load_asr(name_or_path, device or default_device())
    rate = int(getattr(pipe.feature_extractor, "sampling_rate", sampling_rate))
    inputs = [{"raw": resample(np.asarray(w, dtype=np.float64), sampling_rate, rate).astype(np.float32),
               "sampling_rate": rate} for w in waves]
    kwargs = {"return_timestamps": timestamps} if timestamps else {}
    outputs = pipe(inputs, batch_size=batch_size, **kwargs)
    return [
        {"text": str(out.get("text", "")).strip(), "chunks": [dict(c) for c in out.get("chunks", []) or []]}
        for out in outputs
    ]
