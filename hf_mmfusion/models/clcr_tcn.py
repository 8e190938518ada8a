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

"""Masked non-causal temporal convolution network (Bai et al., 2018) with three stages."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .masking import zero_padding


class TemporalBlock(nn.Module):
    """Residual block of two dilated convolutions; padding frames are zeroed before every conv.

    Shapes: ``x[B, T, d], mask[B, T] -> [B, T, d]``.
    """

    def __init__(self, dim: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        pad = dilation * (kernel_size - 1) // 2
        self.conv1 = nn.Conv1d(dim, dim, kernel_size, dilation=dilation, padding=pad)
        self.conv2 = nn.Conv1d(dim, dim, kernel_size, dilation=dilation, padding=pad)
        self.act = nn.GELU()
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y = zero_padding(x, mask).transpose(1, 2)                    # [B, d, T]
        y = self.dropout(self.act(self.conv1(y)))
        y = y * mask.unsqueeze(1).to(y.dtype)
        y = self.dropout(self.act(self.conv2(y))).transpose(1, 2)    # [B, T, d]
        return zero_padding(x + y, mask)


class ThreeStageTCN(nn.Module):
    """Input projection then ``num_stages`` stages of dilated blocks; each stage output is one level.

    Dilations grow stage by stage so the levels see increasing temporal context (low -> high
    semantics). Shapes: ``features[B, T, D_in], mask[B, T] -> list of num_stages tensors [B, T, d]``.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_size: int,
        kernel_size: int = 3,
        dilations: Sequence[int] = (1, 2, 4, 8, 16, 32),
        num_stages: int = 3,
        dropout: float = 0.1,
    ):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"tcn kernel_size must be odd to keep the length, got {kernel_size}")
        if len(dilations) % num_stages != 0:
            raise ValueError(
                f"tcn dilations ({len(dilations)} values) must split evenly into {num_stages} stages"
            )
        per_stage = len(dilations) // num_stages
        self.input_proj = nn.Linear(input_dim, hidden_size)
        self.stages = nn.ModuleList(
            nn.ModuleList(
                TemporalBlock(hidden_size, kernel_size, d, dropout)
                for d in dilations[s * per_stage : (s + 1) * per_stage]
            )
            for s in range(num_stages)
        )

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        x = zero_padding(self.input_proj(features), mask)
        levels = []
        for stage in self.stages:
            for block in stage:
                x = block(x, mask)
            levels.append(x)
        return levels
