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
"""Shared base of the frame-level feature extractors of the acoustic and visual streams.

Both extractors (``feature_extraction_acoustic``, ``feature_extraction_visual``) take *pre-computed* frame
features (COVAREP, eGeMAPS, log-mel, Facet, OpenFace, CNN embeddings ...) as one ``[frames, feature_size]``
array per sample, and return padded batches with a frame mask. They optionally

- clean non-finite values (``non_finite``: ``"zero"``, ``"clip"`` or ``"error"``; CMU-MOSEI's COVAREP
  frames contain ``-inf``);
- standardise every feature dimension with a mean and standard deviation fitted on a training split
  (:meth:`fit_normalization`), and clip the standardised values to +-``normalization_clip`` (10 by default
  when fitted); the statistics and the clip are stored in the saved config.

Each of them also computes frames from raw media. The saved config records the kind of features, the
encoder, its layer and the width, so a reloaded extractor computes the same features.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
from transformers.feature_extraction_sequence_utils import SequenceFeatureExtractor
from transformers.feature_extraction_utils import BatchFeature
from transformers.utils import PaddingStrategy

from .arrays import is_tensor_like, to_numpy

NON_FINITE_POLICIES = ("zero", "clip", "error")
# Where the frames a model is trained on come from: computed by this extractor from raw media, or given.
FEATURE_SOURCES = ("raw", "precomputed")
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm")
# Standard deviations a fitted normalisation clips at: far beyond any value of a well-behaved feature (at
# most 1% of any distribution lies 10 standard deviations out), but it bounds sentinel values such as
# COVAREP's clipped +-255 and unseen extremes of nearly constant dimensions.
DEFAULT_NORMALIZATION_CLIP = 10.0


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



def _check_clip(clip) -> float | None:
    if clip is None:
        return None
    if isinstance(clip, bool) or not isinstance(clip, (int, float, np.integer, np.floating)) or not clip > 0 or not (
        math.isfinite(clip)
    ):
        raise ValueError(f"normalization_clip must be a positive number of standard deviations or None, got {clip!r}")
    return float(clip)


class FrameFeatureExtractor(SequenceFeatureExtractor):
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
        arr = to_numpy(frames)
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
    ) -> FrameFeatureExtractor:
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
        if is_tensor_like(inputs) and not isinstance(inputs, (list, tuple)):
            arr = to_numpy(inputs)
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
            if not is_tensor_like(first) and isinstance(first, (list, tuple)) and first and not isinstance(
                first[0], (list, tuple)
            ) and not is_tensor_like(first[0]):
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
            arr = to_numpy(sample).astype(np.float32, copy=False)
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
                mask = np.asarray(to_numpy(masks[i])).reshape(-1)[: arr.shape[0]] > 0
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
