"""Frame-level feature extractors for the acoustic and visual streams.

Both extractors take *pre-computed* frame features (COVAREP, eGeMAPS, log-mel, Facet, OpenFace, CNN
embeddings ...) as one ``[frames, feature_size]`` array per sample, and return padded batches with a
frame mask. They optionally

- clean non-finite values (``non_finite``: ``"zero"``, ``"clip"`` or ``"error"``; CMU-MOSEI's COVAREP
  frames contain ``-inf``);
- standardise every feature dimension with a mean and standard deviation fitted on a training split
  (:meth:`fit_normalization`), and clip the standardised values to +-``normalization_clip`` (10 by default
  when fitted); the statistics and the clip are stored in the saved config.

``AcousticFeatureExtractor`` also turns raw waveforms into frames: a waveform at any sampling rate is
resampled to ``sampling_rate`` (polyphase filtering, ``scipy.signal.resample_poly``) and becomes log-mel or
MFCC frames with a 25 ms Hann window every 10 ms, that is ``frames_per_second = 100`` frames a second;
a waveform of ``n`` samples gives ``1 + n // hop_length`` frames (the window is centred on each frame time).

It also computes the descriptors people train on: openSMILE eGeMAPSv02 (25) or ComParE 2016 (65) low-level
descriptors at 100 frames a second (``raw_features="egemaps"`` / ``"compare"``, the ``audio`` extra), or the
hidden states of any transformers audio encoder (``raw_features="pretrained"``: wav2vec2, HuBERT, WavLM,
Whisper's encoder). A path to a video file is an audio input too: its audio track is decoded with PyAV.

``VisualFeatureExtractor`` reads raw video too (a video file, decoded with PyAV: the ``video`` extra, or
``[frames, H, W, 3]`` pixels): frames are sampled at ``sampling_rate`` per second and each becomes the mean
colour of every cell of a ``video_grid_size`` x ``video_grid_size`` grid, in [0, 1] (``feature_size`` must
then be ``3 * video_grid_size**2``), a descriptor that needs no model; or (``raw_features="pretrained"``) one
embedding per frame from any transformers vision encoder (CLIP / SigLIP vision towers, DINOv2, ViT). With
``face_crop=True`` each frame is first cropped to its largest face (OpenCV's Haar cascade, the ``face``
extra); frames without a face are missing frames: their mask is 0.

The saved config records the kind of features, the encoder, its layer and the width, so a reloaded
extractor computes the same features.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
from transformers.audio_utils import mel_filter_bank, spectrogram, window_function
from transformers.feature_extraction_sequence_utils import SequenceFeatureExtractor
from transformers.feature_extraction_utils import BatchFeature
from transformers.utils import PaddingStrategy

from .media import (
    OPENSMILE_SETS,
    VISUAL_POOLING,
    crop_face,
    encode_audio,
    encode_images,
    encoder_sampling_rate,
    encoder_width,
    opensmile_frames,
    read_audio,
    resample,
    sample_pixels,
    sample_video,
    to_mono,
)

NON_FINITE_POLICIES = ("zero", "clip", "error")
# Where the frames a model is trained on come from: computed by this extractor from raw media, or given.
FEATURE_SOURCES = ("raw", "precomputed")
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm")
RAW_AUDIO_FEATURES = ("log_mel", "mfcc", "egemaps", "compare", "pretrained")
RAW_VISUAL_FEATURES = ("grid", "pretrained")
# Widths of the frames each kind gives when the config does not say (the first two are the historic defaults).
# Standard deviations a fitted normalisation clips at: far beyond any value of a well-behaved feature (at
# most 1% of any distribution lies 10 standard deviations out), but it bounds sentinel values such as
# COVAREP's clipped +-255 and unseen extremes of nearly constant dimensions.
DEFAULT_NORMALIZATION_CLIP = 10.0
DEFAULT_AUDIO_WIDTH = {"log_mel": 74, "mfcc": 74, **{k: w for k, (_, w) in OPENSMILE_SETS.items()}}


def _is_tensor_like(x) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype")


def _surely_finite(frames: np.ndarray) -> bool:
    """True when every value is finite, decided by one BLAS dot product (several times faster than a sum);
    False also when the sum of squares merely overflows, so callers confirm with ``np.isfinite``."""
    flat = frames.reshape(-1)
    return math.isfinite(np.vdot(flat, flat))  # vdot, unlike dot, does not warn when the sum overflows


def check_rate(value, name: str, whole: bool = False) -> float:
    """``value`` as a positive finite float (a whole number with ``whole``), or a ``ValueError`` naming ``name``."""
    kind = "a positive whole number" if whole else "a positive number"
    try:
        rate = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {kind} (per second), got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(rate) or rate <= 0 or (whole and not rate.is_integer()):
        raise ValueError(f"{name} must be {kind} (per second), got {value!r}")
    return rate


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensors, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _check_clip(clip) -> float | None:
    if clip is None:
        return None
    if isinstance(clip, bool) or not isinstance(clip, (int, float, np.integer, np.floating)) or not clip > 0 or not (
        math.isfinite(clip)
    ):
        raise ValueError(f"normalization_clip must be a positive number of standard deviations or None, got {clip!r}")
    return float(clip)


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
            A dimension whose standard deviation is at most this is constant on the fitting split: it is
            centred and not scaled (divided by 1), so a different value at test time moves it by that
            difference instead of blowing it up by 1 / eps.
        normalization_clip (`float`, *optional*):
            Clip standardised values to +-this many standard deviations; ``None`` (the default of an
            extractor built without :meth:`fit_normalization`) does not clip. Real features need it: clipped
            COVAREP values (+-255) and rare values of nearly constant dimensions lie tens of standard
            deviations out, and one such value would dominate a frame's projection.
        feature_source (`str`, *optional*, defaults to `"raw"`):
            Where the frames of the model this extractor serves come from: ``"raw"`` when this extractor
            computes them from raw media (recordings, videos), ``"precomputed"`` when they were computed
            elsewhere (COVAREP, Facet, a dataset's frames) and are given as arrays. An extractor with
            ``"precomputed"`` refuses raw media, since the frames it would compute are not the features the
            model was trained on. ``hf-mmfusion train`` records it; a saved config without it (written by an
            earlier version) loads as ``"precomputed"``, unless its settings only make sense for raw media
            (a non-default ``raw_features``, ``face_crop``).
    """

    modality: str = ""
    # What raw input of this modality is called in messages, and the raw settings a config has by default.
    raw_media: str = "raw media"
    default_raw_features: str = ""
    # Whether a frame whose values are all NaN is a missing frame (mask 0) rather than a frame to clean.
    missing_nan_rows: bool = False

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
        normalization_clip: float | None = None,
        feature_source: str = "raw",
        **kwargs,
    ):
        if feature_source not in FEATURE_SOURCES:
            raise ValueError(f"feature_source must be one of {FEATURE_SOURCES}, got {feature_source!r}")
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
        self.normalization_clip = _check_clip(normalization_clip)
        self.feature_mean = None if feature_mean is None else [float(v) for v in feature_mean]
        self.feature_std = None if feature_std is None else [float(v) for v in feature_std]
        for name in ("feature_mean", "feature_std"):
            values = getattr(self, name)
            if values is not None and len(values) != self.feature_size:
                raise ValueError(f"{name} must hold feature_size={self.feature_size} values, got {len(values)}")
        if do_normalize and (self.feature_mean is None or self.feature_std is None):
            raise ValueError("do_normalize=True needs feature_mean and feature_std (see fit_normalization)")
        self.do_normalize = bool(do_normalize)
        self.feature_source = feature_source

    @classmethod
    def from_dict(cls, feature_extractor_dict: dict, **kwargs):
        if "feature_source" not in feature_extractor_dict:
            # Configs saved before the field existed: refusing raw media is the safe reading (a model trained on
            # precomputed frames would otherwise score frames it never saw), unless the settings say raw.
            raw_only = feature_extractor_dict.get("raw_features", cls.default_raw_features) != cls.default_raw_features
            raw_only = raw_only or bool(feature_extractor_dict.get("face_crop", False))
            feature_extractor_dict = {**feature_extractor_dict, "feature_source": "raw" if raw_only else "precomputed"}
        return super().from_dict(feature_extractor_dict, **kwargs)

    def check_raw_media(self, where: str, media: str | None = None) -> None:
        """A ``ValueError`` naming ``where`` (the input, which is ``media``) when this extractor's model was
        trained on precomputed frames, which raw media cannot be turned into."""
        if self.feature_source == "raw":
            return
        media = media or self.raw_media
        raise ValueError(
            f"`{where}` is {media}, but this {self.modality} feature extractor serves a model trained on "
            f"precomputed {self.modality} frames, which it cannot compute from {media}; pass `{self.modality}` "
            f"as [frames, {self.feature_size}] frame features made as the training data's were (a .npy file or an "
            "array). If the training frames were computed by this extractor, set feature_source='raw' in the "
            f"{self.modality}_feature_extractor of processor_config.json"
        )

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

    def _missing_rows(self, frames: np.ndarray) -> np.ndarray | None:
        """Boolean ``[T]`` of the missing (all-NaN) frames, or ``None`` when there is none; only called on
        frames that are not all finite."""
        if not self.missing_nan_rows or frames.shape[0] == 0:
            return None
        rows = np.isnan(frames).all(axis=1)
        return rows if rows.any() else None

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
                f"got {list(arr.shape)}{self._shape_hint(arr.shape)}"
            )
        if not np.issubdtype(arr.dtype, np.number) and arr.dtype != bool:
            raise ValueError(f"`{self.modality}[{index}]` must hold numbers, got dtype {arr.dtype}")
        return arr.astype(np.float32, copy=False)

    def _shape_hint(self, shape: tuple) -> str:
        """What a wrongly shaped input probably is, appended to the shape error (nothing by default)."""
        return ""

    # ---------------------------------------------------------------- normalisation
    def fit_normalization(
        self, samples: Iterable, clip: float | None = DEFAULT_NORMALIZATION_CLIP
    ) -> _FrameFeatureExtractor:
        """Fit per-dimension mean and standard deviation on ``samples`` and switch normalisation on.

        ``samples`` is any iterable of ``[frames, feature_size]`` arrays (for example a training split's
        ``audio`` column). Every real frame counts once; the non-finite policy is applied first. Uses a
        streaming (Chan et al.) update in float64, so it works on splits that do not fit in memory.
        ``clip`` becomes ``normalization_clip`` (``None``: no clipping). Returns ``self``.
        """
        clip = _check_clip(clip)
        count = 0
        mean = np.zeros(self.feature_size, dtype=np.float64)
        m2 = np.zeros(self.feature_size, dtype=np.float64)
        for i, sample in enumerate(samples):
            frames = self._as_frames(sample, i)
            missing = None if _surely_finite(frames) else self._missing_rows(frames)
            if missing is not None:
                frames = frames[~missing]
            frames = self._clean(frames, i).astype(np.float64)
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
        self.normalization_clip = clip
        self.do_normalize = True
        return self

    def _normalization_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        mean = np.asarray(self.feature_mean, dtype=np.float32)
        std = np.asarray(self.feature_std, dtype=np.float32)
        std = np.where(std > np.float32(self.normalization_eps), std, np.float32(1.0))
        return mean, std

    def _normalize(self, frames: np.ndarray) -> np.ndarray:
        if not self.do_normalize:
            return frames
        mean, std = self._normalization_arrays()
        out = (frames - mean) / std
        if self.normalization_clip is not None:
            np.clip(out, -self.normalization_clip, self.normalization_clip, out=out)
        return out

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

    def _frames_from_inputs(self, samples: list, **kwargs) -> list[np.ndarray]:
        """Frames of every sample of a batch (extractors with batched encoders override this)."""
        return [self._frames_from_input(s, i, **kwargs) for i, s in enumerate(samples)]

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
        frames, missing = [], []
        for i, sample in enumerate(samples):
            arr = _to_numpy(sample).astype(np.float32, copy=False)
            if arr.ndim == 1 and arr.size == 0:
                arr = arr.reshape(0, self.feature_size)
            if arr.ndim != 2 or arr.shape[1] != self.feature_size:
                raise ValueError(
                    f"`{self.features_name}[{i}]` must have shape [frames, {self.feature_size}], got {list(arr.shape)}"
                )
            rows = None
            if masks is not None:
                # Rows that were padded before (e.g. a fixed-length dataset) keep only their real frames; masked
                # frames between real ones (missing frames) stay in place, masked.
                mask = np.asarray(_to_numpy(masks[i])).reshape(-1)[: arr.shape[0]] > 0
                kept = int(np.flatnonzero(mask)[-1]) + 1 if mask.any() else 0
                arr = arr[:kept]
                if not mask[:kept].all():
                    rows = ~mask[:kept]
            frames.append(arr)
            missing.append(rows)
        return self._pad_frames(
            frames, padding, max_length, truncation, pad_to_multiple_of, return_attention_mask, return_tensors,
            missing=missing,
        )

    def _prepare_missing(self, f: np.ndarray, i: int, normalize: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Cleaned (and normalised) frames of one raw sample, with its missing frames set to the padding
        value; the boolean rows of the missing frames (or ``None``)."""
        rows = self._missing_rows(f)
        if rows is not None:
            f = f.copy()
            f[rows] = 0.0
        f = self._clean(f, i)
        if normalize:
            f = self._normalize(f)
        if rows is not None:
            f = np.array(f, dtype=np.float32)
            f[rows] = self.padding_value
        return f, rows

    def _pad_frames(
        self, frames, padding, max_length, truncation, pad_to_multiple_of, return_attention_mask, return_tensors,
        prepare: bool = False, missing=None,
    ):
        """Truncate and pad ``frames`` (float32 ``[T_i, D]`` arrays) into a ``BatchFeature``.

        With ``prepare`` (raw inputs, not rows processed before), each sample also gets the non-finite policy
        and the normalisation; values that truncation drops are never looked at. ``missing`` holds, per
        sample, ``None`` or the boolean rows of frames that are missing (masked like padding); with
        ``prepare`` they are found from the frames themselves (all-NaN frames, see ``missing_nan_rows``).
        """
        if truncation:
            if max_length is None:
                raise ValueError(f"truncation of `{self.modality}` needs a max_length")
            frames = [f[:max_length] for f in frames]
            if missing is not None:
                missing = [None if m is None else m[:max_length] for m in missing]
        missing = list(missing) if missing is not None else [None] * len(frames)
        lengths = np.array([f.shape[0] for f in frames], dtype=np.int64)
        strategy = self._get_padding_strategies(padding=padding, max_length=max_length)
        if strategy == PaddingStrategy.DO_NOT_PAD:
            if prepare:
                prepared = [self._prepare_missing(f, i, True) for i, f in enumerate(frames)]
                frames = [f for f, _ in prepared]
                missing = [rows for _, rows in prepared]
            out = {self.features_name: frames}
            if return_attention_mask if return_attention_mask is not None else self.return_attention_mask:
                masks = [np.ones(n, dtype=np.int64) for n in lengths]
                for m, rows in zip(masks, missing):
                    if rows is not None:
                        m[rows] = 0
                out[self.mask_name] = masks
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
                missing[i] = self._missing_rows(f)
                if missing[i] is not None:
                    real[missing[i]] = 0.0
                real[...] = self._clean(real, i)
            if normalize:
                real -= mean
                real /= std
                if self.normalization_clip is not None:
                    np.clip(real, -self.normalization_clip, self.normalization_clip, out=real)
            if missing[i] is not None:
                real[missing[i]] = self.padding_value
        positions = np.arange(target)[None, :]
        mask = (positions >= target - lengths[:, None]) if left else (positions < lengths[:, None])
        mask = mask.astype(np.int64)
        for i, rows in enumerate(missing):
            if rows is not None:
                start = target - lengths[i] if left else 0
                mask[i, start : start + lengths[i]][rows] = 0
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
            samples = self._frames_from_inputs(samples, **kwargs)
        return self._pad_frames(
            samples, padding, max_length, truncation, pad_to_multiple_of, return_attention_mask, return_tensors, prepare=True
        )


class VisualFeatureExtractor(_FrameFeatureExtractor):
    r"""
    Visual frame features (Facet, OpenFace, CNN embeddings) -> ``visual_features`` / ``visual_attention_mask``.

    Args:
        feature_size (`int`, *optional*):
            Width of one visual frame (35 for Facet on CMU-MOSEI, 20 on the MMSA CMU-MOSI subset, 47 for
            Facet 4.1, 709 for CH-SIMS). Defaults to 35, or to the encoder's hidden size with
            ``raw_features="pretrained"``.
        sampling_rate (`int`, *optional*, defaults to 30):
            Frames per second sampled from raw video (and the nominal rate of given features).
        padding_value, return_attention_mask, non_finite, do_normalize, feature_mean, feature_std,
        normalization_eps, normalization_clip, feature_source: see the shared options above.

        raw_features (`str`, *optional*, defaults to `"grid"`):
            What a sampled frame of raw video (a file path, or ``[frames, H, W, 3]`` pixels with
            ``video_fps=``) becomes:

            - ``"grid"``: the mean RGB colour of the cells of a ``video_grid_size`` x ``video_grid_size`` grid,
              in [0, 1]; ``feature_size`` must be ``3 * video_grid_size**2`` (48 for 4). Needs no model.
            - ``"pretrained"``: one embedding from the transformers vision encoder
              ``pretrained_model_name_or_path`` (``AutoImageProcessor`` + ``AutoModel``; the vision tower of
              CLIP / SigLIP), batched over frames.

            Files are decoded with PyAV (``pip install av``, or the package's ``video`` extra).
        video_grid_size (`int`, *optional*, defaults to 4):
            Grid of the ``"grid"`` descriptor.
        pretrained_model_name_or_path (`str`, *optional*):
            Hub id or directory of the vision encoder (``raw_features="pretrained"``).
        pretrained_layer (`int`, *optional*, defaults to -1):
            Hidden state the embedding is read from (0 = patch embeddings, -1 = last layer).
        pretrained_pooling (`str`, *optional*, defaults to `"cls"`):
            ``"cls"`` (first token), ``"mean"`` (mean over tokens, or over positions for convolutional maps)
            or ``"pooler"`` (the model's pooled output; ``pretrained_layer`` is then unused).
        pretrained_batch_size (`int`, *optional*, defaults to 32):
            Frames per encoder call.
        face_crop (`bool`, *optional*, defaults to `False`):
            Crop every sampled frame to its largest frontal face before describing it (OpenCV's Haar cascade:
            ``pip install opencv-python-headless``, or the ``face`` extra). A frame without a face is a
            missing frame: all-NaN features, which the extractor masks (mask 0), never zeros.
        face_margin (`float`, *optional*, defaults to 0.2):
            The crop is the face box widened by this fraction of its size on each side.

    Frames whose values are all NaN are missing frames in any input: they get mask 0 and the padding value.
    """

    modality = "visual"
    model_input_names = ["visual_features", "visual_attention_mask"]
    missing_nan_rows = True
    raw_media = "raw video"
    default_raw_features = "grid"

    def __init__(
        self,
        feature_size: int | None = None,
        sampling_rate: int = 30,
        video_grid_size: int = 4,
        raw_features: str = "grid",
        pretrained_model_name_or_path: str | None = None,
        pretrained_layer: int = -1,
        pretrained_pooling: str = "cls",
        pretrained_batch_size: int = 32,
        face_crop: bool = False,
        face_margin: float = 0.2,
        **kwargs,
    ):
        if raw_features not in RAW_VISUAL_FEATURES:
            raise ValueError(f"raw_features must be one of {RAW_VISUAL_FEATURES}, got {raw_features!r}")
        if raw_features == "pretrained" and not pretrained_model_name_or_path:
            raise ValueError("raw_features='pretrained' needs pretrained_model_name_or_path (a Hub id or directory)")
        if pretrained_pooling not in VISUAL_POOLING:
            raise ValueError(f"pretrained_pooling must be one of {VISUAL_POOLING}, got {pretrained_pooling!r}")
        if feature_size is None:
            feature_size = encoder_width(pretrained_model_name_or_path) if raw_features == "pretrained" else 35
        super().__init__(feature_size=feature_size, sampling_rate=sampling_rate, **kwargs)
        if int(video_grid_size) < 1:
            raise ValueError(f"video_grid_size must be at least 1, got {video_grid_size}")
        if float(sampling_rate) <= 0:
            raise ValueError(f"sampling_rate must be positive (frames per second), got {sampling_rate}")
        if int(pretrained_batch_size) < 1:
            raise ValueError(f"pretrained_batch_size must be at least 1, got {pretrained_batch_size}")
        self.video_grid_size = int(video_grid_size)
        self.raw_features = raw_features
        self.pretrained_model_name_or_path = (
            None if pretrained_model_name_or_path is None else os.fspath(pretrained_model_name_or_path)
        )
        self.pretrained_layer = int(pretrained_layer)
        self.pretrained_pooling = pretrained_pooling
        self.pretrained_batch_size = int(pretrained_batch_size)
        self.face_crop = bool(face_crop)
        self.face_margin = float(face_margin)

    def _check_video_width(self, where: str) -> None:
        if self.raw_features != "grid":
            return
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

    def _describe_frame(self, rgb: np.ndarray, where: str):
        """What is kept of one sampled frame: grid colours, the (cropped) pixels to embed, or ``None``
        (no face)."""
        if self.face_crop:
            if not np.issubdtype(rgb.dtype, np.integer):
                rgb = (np.clip(rgb, 0.0, 1.0) * 255.0).round().astype(np.uint8)
            rgb = crop_face(rgb, margin=self.face_margin)
            if rgb is None:
                return None
        if self.raw_features == "grid":
            return self._grid_colours(rgb[None], where)[0]
        if not np.issubdtype(rgb.dtype, np.integer):
            rgb = (np.clip(rgb, 0.0, 1.0) * 255.0).round().astype(np.uint8)
        return rgb

    def _frames_from_described(self, described: list, where: str) -> np.ndarray:
        present = [d for d in described if d is not None]
        if self.raw_features == "grid":
            rows = present
        else:
            rows = list(
                encode_images(
                    present,
                    self.pretrained_model_name_or_path,
                    layer=self.pretrained_layer,
                    pooling=self.pretrained_pooling,
                    batch_size=self.pretrained_batch_size,
                )
            ) if present else []
        if rows and rows[0].shape[-1] != self.feature_size:
            raise ValueError(
                f"`{where}`: {self.pretrained_model_name_or_path!r} gives {rows[0].shape[-1]}-wide embeddings but "
                f"this extractor has feature_size={self.feature_size}"
            )
        out = np.full((len(described), self.feature_size), np.nan, dtype=np.float32)
        keep = [i for i, d in enumerate(described) if d is not None]
        if keep:
            out[keep] = np.stack(rows)
        return out

    def video_to_frames(self, video, video_fps: float | None = None, where: str = "visual") -> np.ndarray:
        """Raw video -> ``[frames, feature_size]`` float32 at ``sampling_rate`` frames a second.

        ``video`` is a path to a video file (decoded with PyAV, frame times from the stream) or pixels
        ``[frames, H, W, 3]`` (RGB, uint8 or floats in [0, 1]) shown at ``video_fps`` frames a second. A clip
        of ``s`` seconds gives ``floor(s * sampling_rate)`` frames (at least one): the frame on screen at
        each sampling time, described per ``raw_features``. With ``face_crop`` the frames without a face are
        all-NaN rows (missing frames).
        """
        self.check_raw_media(where)
        self._check_video_width(where)
        if isinstance(video, (str, os.PathLike)):
            described = sample_video(
                os.fspath(video), self.sampling_rate, transform=lambda rgb: self._describe_frame(rgb, where), where=where
            )
        else:
            pixels = _to_numpy(video)
            if pixels.ndim != 4 or pixels.shape[-1] != 3:
                raise ValueError(f"`{where}` pixels must have shape [frames, height, width, 3], got {list(pixels.shape)}")
            if 0 in pixels.shape:
                raise ValueError(
                    f"`{where}` pixels are empty (shape {list(pixels.shape)}): pass at least one frame of at least "
                    "one pixel, as [frames, height, width, 3]"
                )
            if not np.issubdtype(pixels.dtype, np.number) or pixels.dtype == bool:
                raise ValueError(f"`{where}` pixels must be numbers (uint8, or floats in [0, 1]), got dtype {pixels.dtype}")
            if not np.issubdtype(pixels.dtype, np.integer) and not np.isfinite(pixels).all():
                raise ValueError(f"`{where}` pixels contain NaN or infinite values")
            if video_fps is None:
                raise ValueError(f"`{where}` is raw pixels: pass video_fps= (frames per second, > 0)")
            video_fps = check_rate(video_fps, "video_fps")
            described = [self._describe_frame(rgb, where) for rgb in sample_pixels(pixels, video_fps, self.sampling_rate)]
        return self._frames_from_described(described, where)

    def _frames_from_input(self, sample, index: int, video_fps: float | None = None, **kwargs) -> np.ndarray:
        if isinstance(sample, (str, os.PathLike)):
            if os.fspath(sample).lower().endswith(VIDEO_SUFFIXES) or os.path.isdir(sample):
                return self.video_to_frames(sample, where=f"visual[{index}]")
            raise ValueError(
                f"`visual[{index}]`: {os.fspath(sample)!r} is not a video file ({', '.join(VIDEO_SUFFIXES)}); "
                "pass frame features as arrays"
            )
        if _is_tensor_like(sample) and len(sample.shape) == 4:
            return self.video_to_frames(sample, video_fps, where=f"visual[{index}]")
        return self._as_frames(sample, index)

    def _shape_hint(self, shape: tuple) -> str:
        if len(shape) == 3 and shape[-1] == 3:
            return (
                "; that looks like one [height, width, 3] image: raw video is [frames, height, width, 3] pixels "
                "with video_fps= (one image is [1, height, width, 3])"
            )
        return ""

    def _split_batch(self, inputs) -> list:
        if isinstance(inputs, (str, os.PathLike)):
            return [inputs]
        if _is_tensor_like(inputs) and not isinstance(inputs, (list, tuple)):
            if len(inputs.shape) == 4:
                return [inputs]                                                   # one clip of pixels
            arr = _to_numpy(inputs)
            if arr.ndim == 3 and arr.shape[-1] == 3 and (self.feature_size != 3 or np.issubdtype(arr.dtype, np.integer)):
                # Not [batch, frames, feature_size] frames but an image; split by rows it would be misreported.
                raise ValueError(f"`visual` must be frame features or raw video, got shape {list(arr.shape)}{self._shape_hint(arr.shape)}")
        return super()._split_batch(inputs)


class AcousticFeatureExtractor(_FrameFeatureExtractor):
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
