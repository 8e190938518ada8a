"""Frame-level feature extractors for the acoustic and visual streams.

Both extractors take *pre-computed* frame features (COVAREP, eGeMAPS, log-mel, Facet, OpenFace, CNN
embeddings ...) as one ``[frames, feature_size]`` array per sample, and return padded batches with a
frame mask. They optionally

- clean non-finite values (``non_finite``: ``"zero"``, ``"clip"`` or ``"error"``; CMU-MOSEI's COVAREP
  frames contain ``-inf``);
- standardise every feature dimension with a mean and standard deviation fitted on a training split
  (:meth:`fit_normalization`); the statistics are stored in the saved config.

``AcousticFeatureExtractor`` also turns raw waveforms into frames: a waveform at any sampling rate is
resampled to ``sampling_rate`` (polyphase filtering, ``scipy.signal.resample_poly``) and becomes log-mel or
MFCC frames with a 25 ms Hann window every 10 ms, that is ``frames_per_second = 100`` frames a second;
a waveform of ``n`` samples gives ``1 + n // hop_length`` frames (the window is centred on each frame time).

``VisualFeatureExtractor`` reads raw video too (a video file, decoded with PyAV: the ``video`` extra, or
``[frames, H, W, 3]`` pixels): frames are sampled at ``sampling_rate`` per second and each becomes the mean
colour of every cell of a ``video_grid_size`` x ``video_grid_size`` grid, in [0, 1] (``feature_size`` must
then be ``3 * video_grid_size**2``). This descriptor needs no pretrained face or vision model; models trained
on Facet / OpenFace features need those features instead.
"""

from __future__ import annotations

import math
import os
import struct
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
from transformers.audio_utils import mel_filter_bank, spectrogram, window_function
from transformers.feature_extraction_sequence_utils import SequenceFeatureExtractor
from transformers.feature_extraction_utils import BatchFeature
from transformers.utils import PaddingStrategy

NON_FINITE_POLICIES = ("zero", "clip", "error")
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm")
RAW_AUDIO_FEATURES = ("log_mel", "mfcc")


def _is_tensor_like(x) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype")


def _surely_finite(frames: np.ndarray) -> bool:
    """True when every value is finite, decided by one BLAS dot product (several times faster than a sum);
    False also when the sum of squares merely overflows, so callers confirm with ``np.isfinite``."""
    flat = frames.reshape(-1)
    return math.isfinite(np.vdot(flat, flat))  # vdot, unlike dot, does not warn when the sum overflows


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensors, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x)


class _FrameFeatureExtractor(SequenceFeatureExtractor):
    r"""
    Shared logic of the frame extractors: validation, non-finite cleaning, normalisation, padding.

    Args:
        feature_size (`int`):
            Width ``D`` of one frame.
        sampling_rate (`int`):
            Frames per second of the features this extractor is documented for; kept for transformers'
            ``SequenceFeatureExtractor`` interface (the acoustic extractor uses it as the waveform rate).
        padding_value (`float`, *optional*, defaults to 0.0):
            Value written into padded frames.
        return_attention_mask (`bool`, *optional*, defaults to `True`):
            Whether to return the ``{modality}_attention_mask`` (1 = real frame).
        non_finite (`str`, *optional*, defaults to `"zero"`):
            What to do with NaN and +-inf in the input frames:

            - ``"zero"``: replace them by 0 (the MMSA data loaders' choice for MOSEI's ``-inf``);
            - ``"clip"``: replace +-inf by the largest / smallest finite value of the same feature dimension in
              the same sample (0 when that dimension has no finite value), and NaN by 0;
            - ``"error"``: raise a ``ValueError`` naming the sample.
        do_normalize (`bool`, *optional*, defaults to `False`):
            Standardise each dimension with ``feature_mean`` / ``feature_std`` (set by
            :meth:`fit_normalization`).
        feature_mean, feature_std (`list[float]`, *optional*):
            Per-dimension statistics, ``feature_size`` values each.
        normalization_eps (`float`, *optional*, defaults to 1e-5):
            Lower bound of the standard deviation (constant dimensions are centred, not blown up).
    """

    modality: str = ""

    def __init__(
        self,
        feature_size: int,
        sampling_rate: int,
        padding_value: float = 0.0,
        return_attention_mask: bool = True,
        non_finite: str = "zero",
        do_normalize: bool = False,
        feature_mean: Sequence[float] | None = None,
        feature_std: Sequence[float] | None = None,
        normalization_eps: float = 1e-5,
        **kwargs,
    ):
        if int(feature_size) < 1:
            raise ValueError(f"feature_size must be a positive frame width, got {feature_size}")
        if non_finite not in NON_FINITE_POLICIES:
            raise ValueError(f"non_finite must be one of {NON_FINITE_POLICIES}, got {non_finite!r}")
        super().__init__(
            feature_size=int(feature_size),
            sampling_rate=sampling_rate,
            padding_value=float(padding_value),
            return_attention_mask=return_attention_mask,
            **kwargs,
        )
        self.non_finite = non_finite
        self.normalization_eps = float(normalization_eps)
        self.feature_mean = None if feature_mean is None else [float(v) for v in feature_mean]
        self.feature_std = None if feature_std is None else [float(v) for v in feature_std]
        for name in ("feature_mean", "feature_std"):
            values = getattr(self, name)
            if values is not None and len(values) != self.feature_size:
                raise ValueError(f"{name} must hold feature_size={self.feature_size} values, got {len(values)}")
        if do_normalize and (self.feature_mean is None or self.feature_std is None):
            raise ValueError("do_normalize=True needs feature_mean and feature_std (see fit_normalization)")
        self.do_normalize = bool(do_normalize)

    # ---------------------------------------------------------------- names
    @property
    def features_name(self) -> str:
        return self.model_input_names[0]

    @property
    def mask_name(self) -> str:
        return self.model_input_names[1]

    def to_dict(self) -> dict:
        output = super().to_dict()
        # Caches (mel filters, window) are rebuilt from the config on load.
        return {k: v for k, v in output.items() if not k.startswith("_")}

    # ---------------------------------------------------------------- cleaning
    def _clean(self, frames: np.ndarray, index: int) -> np.ndarray:
        """``frames[T, D]`` float32 with the non-finite policy applied."""
        if _surely_finite(frames):
            return frames
        finite = np.isfinite(frames)
        if finite.all():
            return frames
        if self.non_finite == "error":
            bad = np.argwhere(~finite)[0]
            raise ValueError(
                f"`{self.modality}[{index}]` has a non-finite value ({frames[tuple(bad)]}) at frame {bad[0]}, "
                f"dimension {bad[1]}; set non_finite='zero' or 'clip' to clean such values"
            )
        if self.non_finite == "zero":
            return np.where(finite, frames, np.float32(0.0))
        masked = np.where(finite, frames, np.nan)
        with warnings.catch_warnings():
            # A dimension without any finite value is an expected case here (it becomes 0).
            warnings.simplefilter("ignore", RuntimeWarning)
            hi = np.nan_to_num(np.nanmax(masked, axis=0), nan=0.0)
            lo = np.nan_to_num(np.nanmin(masked, axis=0), nan=0.0)
        out = np.where(np.isposinf(frames), hi[None, :], frames)
        out = np.where(np.isneginf(out), lo[None, :], out)
        return np.nan_to_num(out, nan=0.0).astype(np.float32)

    def _is_plain_frames(self, frames) -> bool:
        """Already a float32 ``[T, D]`` ndarray: the common case, used as it is."""
        return type(frames) is np.ndarray and frames.dtype == np.float32 and frames.ndim == 2 and (
            frames.shape[1] == self.feature_size
        )

    def _as_frames(self, frames, index: int) -> np.ndarray:
        """``frames`` as a validated float32 ``[T, D]`` array; non-finite values are dealt with when padding."""
        if self._is_plain_frames(frames):
            return frames
        arr = _to_numpy(frames)
        if arr.dtype == object:
            arr = np.asarray(arr.tolist())
        if arr.ndim == 1 and arr.size == 0:
            arr = arr.reshape(0, self.feature_size)
        if arr.ndim != 2 or arr.shape[1] != self.feature_size:
            raise ValueError(
                f"`{self.modality}[{index}]` must have shape [frames, {self.feature_size}] (feature_size), "
                f"got {list(arr.shape)}"
            )
        if not np.issubdtype(arr.dtype, np.number) and arr.dtype != bool:
            raise ValueError(f"`{self.modality}[{index}]` must hold numbers, got dtype {arr.dtype}")
        return arr.astype(np.float32, copy=False)

    # ---------------------------------------------------------------- normalisation
    def fit_normalization(self, samples: Iterable) -> _FrameFeatureExtractor:
        """Fit per-dimension mean and standard deviation on ``samples`` and switch normalisation on.

        ``samples`` is any iterable of ``[frames, feature_size]`` arrays (for example a training split's
        ``audio`` column). Every real frame counts once; the non-finite policy is applied first. Uses a
        streaming (Chan et al.) update in float64, so it works on splits that do not fit in memory.
        Returns ``self``.
        """
        count = 0
        mean = np.zeros(self.feature_size, dtype=np.float64)
        m2 = np.zeros(self.feature_size, dtype=np.float64)
        for i, sample in enumerate(samples):
            frames = self._clean(self._as_frames(sample, i), i).astype(np.float64)
            n = frames.shape[0]
            if n == 0:
                continue
            batch_mean = frames.mean(axis=0)
            batch_m2 = ((frames - batch_mean) ** 2).sum(axis=0)
            delta = batch_mean - mean
            total = count + n
            mean = mean + delta * (n / total)
            m2 = m2 + batch_m2 + delta**2 * (count * n / total)
            count = total
        if count == 0:
            raise ValueError(f"fit_normalization got no {self.modality} frames; pass a non-empty split")
        self.feature_mean = mean.tolist()
        self.feature_std = np.sqrt(m2 / count).tolist()
        self.do_normalize = True
        return self

    def _normalization_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        mean = np.asarray(self.feature_mean, dtype=np.float32)
        std = np.maximum(np.asarray(self.feature_std, dtype=np.float32), np.float32(self.normalization_eps))
        return mean, std

    def _normalize(self, frames: np.ndarray) -> np.ndarray:
        if not self.do_normalize:
            return frames
        mean, std = self._normalization_arrays()
        return (frames - mean) / std

    # ---------------------------------------------------------------- batching
    def _split_batch(self, inputs) -> list:
        """One entry per sample from a single ``[T, D]`` array, a ``[B, T, D]`` array or a list."""
        if _is_tensor_like(inputs) and not isinstance(inputs, (list, tuple)):
            arr = _to_numpy(inputs)
            if arr.ndim == 2:
                return [arr]
            if arr.ndim == 3:
                return list(arr)
            raise ValueError(
                f"`{self.modality}` must be [frames, {self.feature_size}] for one sample or "
                f"[batch, frames, {self.feature_size}] / a list of [frames, {self.feature_size}] arrays, "
                f"got shape {list(arr.shape)}"
            )
        if isinstance(inputs, (list, tuple)):
            if len(inputs) == 0:
                raise ValueError(f"`{self.modality}` is an empty list; pass at least one sample")
            first = inputs[0]
            # A list of numbers per frame (one sample as nested lists) versus a list of samples.
            if not _is_tensor_like(first) and isinstance(first, (list, tuple)) and first and not isinstance(
                first[0], (list, tuple)
            ) and not _is_tensor_like(first[0]):
                return [inputs]
            return list(inputs)
        raise ValueError(f"`{self.modality}` must be an array, a tensor or a list of them, got {type(inputs).__name__}")

    def _frames_from_input(self, sample, index: int, **kwargs) -> np.ndarray:
        return self._as_frames(sample, index)

    def pad(
        self,
        processed_features,
        padding: bool | str | PaddingStrategy = True,
        max_length: int | None = None,
        truncation: bool = False,
        pad_to_multiple_of: int | None = None,
        return_attention_mask: bool | None = None,
        return_tensors=None,
    ) -> BatchFeature:
        """Pad (and optionally truncate) already extracted frames.

        ``processed_features`` is a dict holding ``{modality}_features`` (a list of ``[T_i, D]`` arrays) and
        optionally ``{modality}_attention_mask``, or a list of such per-sample dicts (collate-function style).
        Returns ``{modality}_features [B, T, D]`` float32 and ``{modality}_attention_mask [B, T]`` int64.
        transformers' generic ``SequenceFeatureExtractor.pad`` is not used because it pads only a key
        named ``attention_mask`` and treats ``feature_size == 1`` frames as 1-D.
        """
        if isinstance(processed_features, (list, tuple)):
            processed_features = {
                key: [row[key] for row in processed_features] for key in processed_features[0].keys()
            }
        if self.features_name not in processed_features:
            raise ValueError(f"pad needs `{self.features_name}`, got keys {list(processed_features)}")
        samples = processed_features[self.features_name]
        masks = processed_features.get(self.mask_name)
        frames = []
        for i, sample in enumerate(samples):
            arr = _to_numpy(sample).astype(np.float32, copy=False)
            if arr.ndim == 1 and arr.size == 0:
                arr = arr.reshape(0, self.feature_size)
            if arr.ndim != 2 or arr.shape[1] != self.feature_size:
                raise ValueError(
                    f"`{self.features_name}[{i}]` must have shape [frames, {self.feature_size}], got {list(arr.shape)}"
                )
            if masks is not None:
                # Rows that were padded before (e.g. a fixed-length dataset) keep only their real frames.
                arr = arr[: int(np.asarray(_to_numpy(masks[i])).sum())]
            frames.append(arr)
        return self._pad_frames(frames, padding, max_length, truncation, pad_to_multiple_of, return_attention_mask, return_tensors)

    def _pad_frames(
        self, frames, padding, max_length, truncation, pad_to_multiple_of, return_attention_mask, return_tensors,
        prepare: bool = False,
    ):
        """Truncate and pad ``frames`` (float32 ``[T_i, D]`` arrays) into a ``BatchFeature``.

        With ``prepare`` (raw inputs, not rows processed before), each sample also gets the non-finite policy
        and the normalisation; values that truncation drops are never looked at.
        """
        if truncation:
            if max_length is None:
                raise ValueError(f"truncation of `{self.modality}` needs a max_length")
            frames = [f[:max_length] for f in frames]
        lengths = np.array([f.shape[0] for f in frames], dtype=np.int64)
        strategy = self._get_padding_strategies(padding=padding, max_length=max_length)
        if strategy == PaddingStrategy.DO_NOT_PAD:
            if prepare:
                frames = [self._normalize(self._clean(f, i)) for i, f in enumerate(frames)]
            out = {self.features_name: frames}
            if return_attention_mask if return_attention_mask is not None else self.return_attention_mask:
                out[self.mask_name] = [np.ones(n, dtype=np.int64) for n in lengths]
            return BatchFeature(out, tensor_type=return_tensors)
        target = int(lengths.max()) if strategy == PaddingStrategy.LONGEST else int(max_length)
        if target < int(lengths.max()):
            raise ValueError(
                f"`{self.modality}` has {int(lengths.max())} frames, more than max_length={target}; "
                "pass truncation=True to cut it"
            )
        # An all-empty batch keeps one (masked) slot so shapes stay valid downstream.
        target = max(target, 1)
        if pad_to_multiple_of:
            target = -(-target // pad_to_multiple_of) * pad_to_multiple_of
        shape = (len(frames), target, self.feature_size)
        batch = np.zeros(shape, np.float32) if self.padding_value == 0 else np.full(shape, self.padding_value, np.float32)
        left = self.padding_side == "left"
        normalize = prepare and self.do_normalize
        if normalize:
            mean, std = self._normalization_arrays()
        for i, f in enumerate(frames):
            real = batch[i, target - f.shape[0] :] if left else batch[i, : f.shape[0]]
            real[...] = f
            # Checked after the copy, while the sample is in cache.
            if prepare and not _surely_finite(real):
                real[...] = self._clean(f, i)
            if normalize:
                real -= mean
                real /= std
        positions = np.arange(target)[None, :]
        mask = (positions >= target - lengths[:, None]) if left else (positions < lengths[:, None])
        mask = mask.astype(np.int64)
        out = {self.features_name: batch}
        if return_attention_mask if return_attention_mask is not None else self.return_attention_mask:
            out[self.mask_name] = mask
        return BatchFeature(out, tensor_type=return_tensors)

    def __call__(
        self,
        inputs,
        padding: bool | str | PaddingStrategy = True,
        max_length: int | None = None,
        truncation: bool = False,
        pad_to_multiple_of: int | None = None,
        return_attention_mask: bool | None = None,
        return_tensors=None,
        **kwargs,
    ) -> BatchFeature:
        """Frames for one sample (``[T, D]``) or a batch (list of ``[T_i, D]``, or ``[B, T, D]``).

        Returns a ``BatchFeature`` with ``{modality}_features`` (``[B, T, D]`` float32 when padded, else a
        list of ``[T_i, D]`` arrays) and ``{modality}_attention_mask`` (``[B, T]``, 1 = real frame).
        """
        samples = self._split_batch(inputs)
        # Waveforms (sampling_rate), pixels (video_fps), paths and anything not yet float32 [T, D] go through
        # the per-sample extraction; ready frames are padded as they are.
        if any(v is not None for v in kwargs.values()) or not all(self._is_plain_frames(s) for s in samples):
            samples = [self._frames_from_input(s, i, **kwargs) for i, s in enumerate(samples)]
        return self._pad_frames(
            samples, padding, max_length, truncation, pad_to_multiple_of, return_attention_mask, return_tensors, prepare=True
        )


class VisualFeatureExtractor(_FrameFeatureExtractor):
    r"""
    Visual frame features (Facet, OpenFace, CNN embeddings) -> ``visual_features`` / ``visual_attention_mask``.

    Args:
        feature_size (`int`, *optional*, defaults to 35):
            Width of one visual frame (35 for Facet on CMU-MOSEI, 20 on the MMSA CMU-MOSI subset, 47 for
            Facet 4.1, 709 for CH-SIMS).
        sampling_rate (`int`, *optional*, defaults to 30):
            Nominal frames per second of the features (informational).
        padding_value, return_attention_mask, non_finite, do_normalize, feature_mean, feature_std,
        normalization_eps: see the shared options above.

        video_grid_size (`int`, *optional*, defaults to 4):
            Raw video (a file path, or ``[frames, H, W, 3]`` pixels with ``video_fps=``) is sampled at
            ``sampling_rate`` frames a second and each frame becomes the mean RGB colour of the cells of a
            ``video_grid_size`` x ``video_grid_size`` grid, in [0, 1]: ``feature_size`` must be
            ``3 * video_grid_size**2`` (48 for 4) to read video. Files are decoded with PyAV
            (``pip install av``, or the package's ``video`` extra).
    """

    modality = "visual"
    model_input_names = ["visual_features", "visual_attention_mask"]

    def __init__(self, feature_size: int = 35, sampling_rate: int = 30, video_grid_size: int = 4, **kwargs):
        super().__init__(feature_size=feature_size, sampling_rate=sampling_rate, **kwargs)
        if int(video_grid_size) < 1:
            raise ValueError(f"video_grid_size must be at least 1, got {video_grid_size}")
        self.video_grid_size = int(video_grid_size)

    def _check_video_width(self, where: str) -> None:
        width = 3 * self.video_grid_size**2
        if self.feature_size != width:
            raise ValueError(
                f"`{where}` is raw video, whose frames are 3 * video_grid_size**2 = {width} wide, but this extractor "
                f"has feature_size={self.feature_size}; build it with feature_size={width} (or pass frame features)"
            )

    def _grid_colours(self, pixels: np.ndarray, where: str) -> np.ndarray:
        """``pixels[N, H, W, 3]`` (uint8, or floats in [0, 1]) -> mean colour per grid cell ``[N, 3 g^2]``."""
        g = self.video_grid_size
        n, height, width = pixels.shape[:3]
        if height < g or width < g:
            raise ValueError(f"`{where}`: frames of {height} x {width} pixels are smaller than the {g} x {g} grid")
        scale = 255.0 if np.issubdtype(pixels.dtype, np.integer) else 1.0
        rows = np.linspace(0, height, g + 1).astype(int)
        cols = np.linspace(0, width, g + 1).astype(int)
        sums = np.add.reduceat(np.add.reduceat(pixels.astype(np.float64), rows[:-1], axis=1), cols[:-1], axis=2)
        areas = np.diff(rows)[:, None] * np.diff(cols)[None, :]                     # [g, g]
        return (sums / (areas[None, :, :, None] * scale)).reshape(n, 3 * g * g).astype(np.float32)

    def _sample_times(self, times: np.ndarray, duration: float) -> np.ndarray:
        """Index of the frame shown at each sampling time ``k / sampling_rate`` (at least one frame)."""
        count = max(1, int(np.floor(duration * self.sampling_rate + 1e-6)))
        targets = np.arange(count) / float(self.sampling_rate)
        return np.clip(np.searchsorted(times, targets + 1e-9, side="right") - 1, 0, len(times) - 1)

    def video_to_frames(self, video, video_fps: float | None = None, where: str = "visual") -> np.ndarray:
        """Raw video -> ``[frames, 3 * video_grid_size**2]`` float32 at ``sampling_rate`` frames a second.

        ``video`` is a path to a video file (decoded with PyAV, frame times from the stream) or pixels
        ``[frames, H, W, 3]`` (RGB, uint8 or floats in [0, 1]) shown at ``video_fps`` frames a second. A clip
        of ``s`` seconds gives ``floor(s * sampling_rate)`` frames (at least one): the frame on screen at
        each sampling time.
        """
        self._check_video_width(where)
        if isinstance(video, (str, os.PathLike)):
            colours, times, duration = self._decode_video(os.fspath(video), where)
        else:
            pixels = _to_numpy(video)
            if pixels.ndim != 4 or pixels.shape[-1] != 3 or pixels.shape[0] == 0:
                raise ValueError(f"`{where}` pixels must have shape [frames, height, width, 3], got {list(pixels.shape)}")
            if not np.issubdtype(pixels.dtype, np.integer) and not np.isfinite(pixels).all():
                raise ValueError(f"`{where}` pixels contain NaN or infinite values")
            if video_fps is None or float(video_fps) <= 0:
                raise ValueError(f"`{where}` is raw pixels: pass video_fps= (frames per second, > 0)")
            colours = self._grid_colours(pixels, where)
            times = np.arange(len(pixels)) / float(video_fps)
            duration = len(pixels) / float(video_fps)
        return colours[self._sample_times(times, duration)]

    def _decode_video(self, path: str, where: str) -> tuple[np.ndarray, np.ndarray, float]:
        """Decode a file frame by frame (only the grid colours are kept): colours, frame times, duration."""
        try:
            import av
        except ImportError as err:
            raise ImportError(
                f"reading the video file {path!r} needs PyAV: `pip install av` (or `pip install hf_mmfusion[video]`)"
            ) from err
        if not os.path.isfile(path):
            raise ValueError(f"`{where}`: video file {path!r} does not exist")
        colours, times = [], []
        try:
            with av.open(path) as container:
                if not container.streams.video:
                    raise ValueError(f"`{where}`: {path!r} has no video stream")
                stream = container.streams.video[0]
                # A stream without a rate is timed as if it ran at the sampling rate.
                rate = float(stream.average_rate) if stream.average_rate else float(self.sampling_rate)
                for frame in container.decode(stream):
                    colours.append(self._grid_colours(frame.to_ndarray(format="rgb24")[None], where)[0])
                    times.append(len(times) / rate if frame.time is None else float(frame.time))
        except av.error.FFmpegError as err:
            raise ValueError(f"`{where}`: cannot decode video file {path!r} ({err})") from err
        if not colours:
            raise ValueError(f"`{where}`: video file {path!r} has no decodable frame")
        times = np.asarray(times, dtype=np.float64) - times[0]
        return np.stack(colours), times, float(times[-1] + 1.0 / rate)

    def _frames_from_input(self, sample, index: int, video_fps: float | None = None, **kwargs) -> np.ndarray:
        if isinstance(sample, (str, os.PathLike)):
            if os.fspath(sample).lower().endswith(VIDEO_SUFFIXES):
                return self.video_to_frames(sample, where=f"visual[{index}]")
            raise ValueError(
                f"`visual[{index}]`: {os.fspath(sample)!r} is not a video file ({', '.join(VIDEO_SUFFIXES)}); "
                "pass frame features as arrays"
            )
        if _is_tensor_like(sample) and len(sample.shape) == 4:
            return self.video_to_frames(sample, video_fps, where=f"visual[{index}]")
        return self._as_frames(sample, index)

    def _split_batch(self, inputs) -> list:
        if isinstance(inputs, (str, os.PathLike)):
            return [inputs]
        if _is_tensor_like(inputs) and not isinstance(inputs, (list, tuple)) and len(inputs.shape) == 4:
            return [inputs]                                                       # one clip of pixels
        return super()._split_batch(inputs)


class AcousticFeatureExtractor(_FrameFeatureExtractor):
    r"""
    Acoustic frames (pre-computed COVAREP / eGeMAPS / log-mel, or computed here from a waveform) ->
    ``audio_features`` / ``audio_attention_mask``.

    Args:
        feature_size (`int`, *optional*, defaults to 74):
            Width of one acoustic frame (74 for COVAREP on CMU-MOSEI, 5 on the MMSA CMU-MOSI subset, 33 for
            CH-SIMS). For waveforms it is the number of mel bins (``raw_features="log_mel"``) or of cepstral
            coefficients (``"mfcc"``).
        sampling_rate (`int`, *optional*, defaults to 16000):
            Rate waveforms are resampled to before framing.
        raw_features (`str`, *optional*, defaults to `"log_mel"`):
            Frames computed from waveforms: natural-log mel energies or MFCCs (DCT-II of the log-mel energies).
        num_mel_bins (`int`, *optional*):
            Mel filters; defaults to ``feature_size`` for log-mel and ``max(40, feature_size)`` for MFCC.
        frame_length_ms, hop_length_ms (`float`, *optional*, defaults to 25 and 10):
            Analysis window and hop; 10 ms gives 100 frames a second.
        min_frequency, max_frequency (`float`, *optional*, defaults to 20 and ``sampling_rate / 2``):
            Band covered by the mel filters.
        padding_value, return_attention_mask, non_finite, do_normalize, feature_mean, feature_std,
        normalization_eps: see the shared options above.

    Waveforms are recognised by passing ``sampling_rate=`` to the call (or a path to a ``.wav`` file);
    without it the inputs must be frame features of width ``feature_size``.
    """

    modality = "audio"
    model_input_names = ["audio_features", "audio_attention_mask"]

    def __init__(
        self,
        feature_size: int = 74,
        sampling_rate: int = 16000,
        raw_features: str = "log_mel",
        num_mel_bins: int | None = None,
        frame_length_ms: float = 25.0,
        hop_length_ms: float = 10.0,
        min_frequency: float = 20.0,
        max_frequency: float | None = None,
        **kwargs,
    ):
        super().__init__(feature_size=feature_size, sampling_rate=sampling_rate, **kwargs)
        if raw_features not in RAW_AUDIO_FEATURES:
            raise ValueError(f"raw_features must be one of {RAW_AUDIO_FEATURES}, got {raw_features!r}")
        self.raw_features = raw_features
        self.num_mel_bins = num_mel_bins
        self.frame_length_ms = float(frame_length_ms)
        self.hop_length_ms = float(hop_length_ms)
        self.min_frequency = float(min_frequency)
        self.max_frequency = None if max_frequency is None else float(max_frequency)

    # Derived framing parameters (not stored in the config; recomputed from it).
    @property
    def hop_length(self) -> int:
        return int(round(self.sampling_rate * self.hop_length_ms / 1000.0))

    @property
    def frame_length(self) -> int:
        return int(round(self.sampling_rate * self.frame_length_ms / 1000.0))

    @property
    def frames_per_second(self) -> float:
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

    def waveform_to_frames(self, waveform, sampling_rate: int) -> np.ndarray:
        """``waveform`` (``[samples]``, or ``[samples, channels]`` / ``[channels, samples]``, mixed to mono;
        integer PCM is scaled to [-1, 1]) at ``sampling_rate`` -> ``[1 + n // hop_length, feature_size]``
        float32 frames, where ``n`` is the length after resampling to ``self.sampling_rate``."""
        from math import gcd

        from scipy.fft import dct
        from scipy.signal import resample_poly

        wav = _to_numpy(waveform)
        if np.issubdtype(wav.dtype, np.integer):
            wav = wav.astype(np.float64) / float(np.iinfo(wav.dtype).max + 1)
        wav = wav.astype(np.float64)
        if wav.ndim == 2:
            # Channels are the short axis (WAV readers give [samples, channels]).
            wav = wav.mean(axis=1) if wav.shape[1] <= wav.shape[0] else wav.mean(axis=0)
        if wav.ndim != 1 or wav.size == 0:
            raise ValueError(
                f"`audio` waveform must be [samples] or [samples, channels] with samples > 0, got {list(wav.shape)}"
            )
        if not np.isfinite(wav).all():
            raise ValueError("`audio` waveform contains NaN or infinite samples")
        sampling_rate = int(sampling_rate)
        if sampling_rate <= 0:
            raise ValueError(f"sampling_rate must be positive, got {sampling_rate}")
        if sampling_rate != self.sampling_rate:
            g = gcd(sampling_rate, int(self.sampling_rate))
            wav = resample_poly(wav, int(self.sampling_rate) // g, sampling_rate // g)
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

    def _frames_from_input(self, sample, index: int, sampling_rate: int | None = None, **kwargs) -> np.ndarray:
        if isinstance(sample, (str, os.PathLike)):
            from scipy.io import wavfile

            try:
                rate, wav = wavfile.read(os.fspath(sample))
            except (ValueError, OSError, EOFError, struct.error) as err:
                raise ValueError(f"`audio[{index}]`: cannot read WAV file {sample!r}: {err or type(err).__name__}") from err
            return self.waveform_to_frames(wav, rate)
        if sampling_rate is not None:
            return self.waveform_to_frames(sample, sampling_rate)
        return self._as_frames(sample, index)

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
