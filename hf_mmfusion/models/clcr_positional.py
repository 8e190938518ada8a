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

"""Positional encodings of CLCR's level projections."""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_table(length: int, dim: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """The fixed sine/cosine table of "Attention is all you need": ``[length, dim]``."""
    position = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device, dtype=torch.float32)
    table[:, 0::2] = torch.sin(position * div)
    table[:, 1::2] = torch.cos(position * div[: dim // 2])
    return table.to(dtype)


class ScaledSinusoidalEncoding(nn.Module):
    """Sinusoidal positions with a learnable gain ``g`` and a learnable offset vector ``e``.

    One instance per (modality, level) makes the encodings independent across streams while the
    table itself stays length-agnostic (no maximum length is baked into the weights).

    Shapes: ``x[B, T, d] -> x + g * PE[T, d] + e``.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        # One element, not a 0-dim tensor: FSDP2 (`fully_shard`) cannot shard a scalar parameter.
        self.gain = nn.Parameter(torch.ones(1))
        self.offset = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        table = sinusoidal_table(x.shape[1], self.dim, device=x.device, dtype=x.dtype)
        return x + self.gain * table.unsqueeze(0) + self.offset
