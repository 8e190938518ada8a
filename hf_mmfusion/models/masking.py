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

"""Mask-aware tensor helpers shared by every model.

Masks are ``[B, T]`` tensors where a true / non-zero entry marks a real token or frame.
Every helper here treats a row with no real position as empty: it returns zeros, never NaN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Mean of ``x[B, T, D]`` over the real positions of ``mask[B, T]`` -> ``[B, D]`` (zeros for empty rows)."""
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(dim) / m.sum(dim).clamp_min(1.0)


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax of ``scores`` over ``dim`` restricted to ``mask`` (broadcastable); all-masked rows give zeros."""
    mask = mask.bool()
    # A finite fill (not -inf) keeps all-masked rows finite (uniform); the product with the mask then
    # zeroes them, and in every other row the filled entries already underflow to exactly 0.
    filled = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(filled, dim=dim) * mask


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``0`` where ``mask`` is true, a large finite negative number elsewhere, to add to scores before a softmax.

    A quarter of the dtype's lowest value, so that two such terms still add up to a finite number and a row
    with no real position stays finite (uniform) instead of becoming NaN.
    """
    return (~mask.bool()).to(dtype) * (torch.finfo(dtype).min / 4)


def segment_pool(x: torch.Tensor, mask: torch.Tensor, num_segments: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked average pooling of ``x[B, T, D]`` into ``num_segments`` relative-time segments.

    Each real frame t of a sample with n real frames falls in segment ``floor(K * rank(t) / n)``, so
    sequences of different lengths are paired by relative time. Returns ``pooled[B, K, D]`` and
    ``segment_mask[B, K]`` (segments that received at least one frame).
    """
    mask = mask.bool()
    n = mask.sum(1, keepdim=True).clamp_min(1)                     # [B, 1]
    rank = torch.cumsum(mask.long(), dim=1) - 1                    # position among real frames
    seg = (rank * num_segments) // n                               # [B, T]
    seg = seg.clamp(0, num_segments - 1).masked_fill(~mask, 0)
    onehot = F.one_hot(seg, num_segments).to(x.dtype) * mask.unsqueeze(-1).to(x.dtype)  # [B, T, K]
    counts = onehot.sum(1)                                         # [B, K]
    pooled = torch.einsum("btk,btd->bkd", onehot, x) / counts.clamp_min(1.0).unsqueeze(-1)
    return pooled, counts > 0


def cap_length(x: torch.Tensor, mask: torch.Tensor, max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Shorten ``x[B, T, D]`` to at most ``max_length`` slots, sample by sample -> ``(x[B, L, D], mask[B, L])``.

    A sample with ``n <= max_length`` real frames keeps them unchanged, in order, in its first ``n`` slots; a
    longer one is average-pooled by relative time into ``max_length`` segments (frame of rank r goes to
    segment ``floor(max_length * r / n)``). So a sample's result never depends on how far the batch pads it:
    pooling the whole padded length (``segment_pool``) would spread 6 real frames over segments
    [0, 1, 2, 4, 5, 6] of 8. ``L = min(T, max_length)``.
    """
    mask = mask.bool()
    T = x.shape[1]
    if T <= max_length:
        return x, mask
    n = mask.sum(1, keepdim=True)                                  # [B, 1]
    slots = n.clamp(1, max_length)                                 # segments of each sample
    rank = torch.cumsum(mask.long(), dim=1) - 1                    # position among real frames
    seg = ((rank * slots) // n.clamp_min(1)).clamp(0, max_length - 1).masked_fill(~mask, 0)     # [B, T]
    onehot = F.one_hot(seg, max_length).to(x.dtype) * mask.unsqueeze(-1).to(x.dtype)            # [B, T, L]
    counts = onehot.sum(1)                                         # [B, L]
    pooled = torch.einsum("btk,btd->bkd", onehot, x) / counts.clamp_min(1.0).unsqueeze(-1)
    return pooled, counts > 0


def zero_padding(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Zero the padded positions of ``x[B, T, D]`` so they cannot leak through convolutions or sums."""
    return x * mask.unsqueeze(-1).to(x.dtype)
