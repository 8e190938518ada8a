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
"""Visual frames: pre-computed features as they are, or frames computed here from raw video.

``VisualFeatureExtractor`` reads raw video (a video file, decoded with PyAV: the ``video`` extra, or
``[frames, H, W, 3]`` pixels): frames are sampled at ``sampling_rate`` per second and each becomes the mean
colour of every cell of a ``video_grid_size`` x ``video_grid_size`` grid, in [0, 1] (``feature_size`` must
then be ``3 * video_grid_size**2``), a descriptor that needs no model; or (``raw_features="pretrained"``) one
embedding per frame from any transformers vision encoder (CLIP / SigLIP vision towers, DINOv2, ViT). With
``face_crop=True`` each frame is first cropped to its largest face (OpenCV's Haar cascade, the ``face``
extra); frames without a face are missing frames: their mask is 0.
"""

from __future__ import annotations

import os

import numpy as np

from .arrays import is_tensor_like, to_numpy
from .feature_extraction_mmfusion import VIDEO_SUFFIXES, FrameFeatureExtractor, check_rate
from .media import VISUAL_POOLING, crop_face, encode_images, encoder_width, sample_pixels, sample_video

RAW_VISUAL_FEATURES = ("grid", "pretrained")


class VisualFeatureExtractor(FrameFeatureExtractor):
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
            pixels = to_numpy(video)
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
        if is_tensor_like(sample) and len(sample.shape) == 4:
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
        if is_tensor_like(inputs) and not isinstance(inputs, (list, tuple)):
            if len(inputs.shape) == 4:
                return [inputs]                                                   # one clip of pixels
            arr = to_numpy(inputs)
            if arr.ndim == 3 and arr.shape[-1] == 3 and (self.feature_size != 3 or np.issubdtype(arr.dtype, np.integer)):
                # Not [batch, frames, feature_size] frames but an image; split by rows it would be misreported.
                raise ValueError(f"`visual` must be frame features or raw video, got shape {list(arr.shape)}{self._shape_hint(arr.shape)}")
        return super()._split_batch(inputs)
