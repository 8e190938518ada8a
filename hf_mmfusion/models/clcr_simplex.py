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

"""Exact, differentiable Euclidean projection onto the capped (truncated) simplex.

Per row: ``w = argmin ||w - a||^2  s.t.  0 <= w_i <= 1,  sum_i w_i <= k`` over the real positions.
The KKT solution is ``w_i = clip(a_i - theta, 0, 1)`` with ``theta >= 0`` and complementary slackness.
"""

from __future__ import annotations

import torch


def _project_unit_box_inputs(a: torch.Tensor, mask: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    # For a in [0, 1] the upper cap never binds when theta >= 0, so the problem is the sort-based
    # simplex projection with radius k (Duchi et al., 2008), whose autograd Jacobian is exact.
    T = a.shape[-1]
    n = mask.sum(-1)                                                   # [B]
    active = (a * mask).sum(-1) > k
    u = torch.sort(a.masked_fill(~mask, -1e4), dim=-1, descending=True).values
    u = torch.where(torch.arange(T, device=a.device) < n.unsqueeze(-1), u, torch.zeros_like(u))
    j = torch.arange(1, T + 1, device=a.device, dtype=a.dtype)
    cssv = torch.cumsum(u, -1) - k.unsqueeze(-1)
    cond = (u - cssv / j > 0) & (j <= n.unsqueeze(-1))
    rho = (cond * j).amax(-1).clamp_min(1).long()                    # support size, >= 1
    theta = cssv.gather(-1, (rho - 1).unsqueeze(-1)).squeeze(-1) / rho.to(a.dtype)
    theta = torch.where(active, theta, torch.zeros_like(theta))
    return torch.relu(a - theta.unsqueeze(-1)) * mask


def _project_general(a: torch.Tensor, mask: torch.Tensor, k: torch.Tensor, iters: int = 60) -> torch.Tensor:
    # Bisection finds the support without gradient; theta is then recomputed in closed form on the
    # support so autograd sees the exact piecewise-linear solution.
    maskf = mask.to(a.dtype)
    clipped = a.clamp(0, 1) * maskf
    active = clipped.sum(-1) > k
    with torch.no_grad():
        lo = torch.zeros_like(k)
        hi = (a.masked_fill(~mask, 0)).amax(-1).clamp_min(0)
        for _ in range(iters):
            mid = (lo + hi) / 2
            over = ((a - mid.unsqueeze(-1)).clamp(0, 1) * maskf).sum(-1) > k
            lo = torch.where(over, mid, lo)
            hi = torch.where(over, hi, mid)
        theta0 = (lo + hi) / 2
        shifted = a - theta0.unsqueeze(-1)
        free = (shifted > 0) & (shifted < 1) & mask
        capped = (shifted >= 1) & mask
    n_free = free.sum(-1)
    theta = ((a * free).sum(-1) + capped.sum(-1).to(a.dtype) - k) / n_free.clamp_min(1).to(a.dtype)
    theta = torch.where(n_free > 0, theta, theta0)
    theta = torch.where(active, theta, torch.zeros_like(theta))
    return (a - theta.unsqueeze(-1)).clamp(0, 1) * maskf


def project_capped_simplex(a: torch.Tensor, mask: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Project each row of ``a[B, T]`` onto ``{0 <= w <= 1, sum w <= k}`` over ``mask[B, T]`` (CLCR Eq. 3).

    ``k`` is ``[B]`` (or a scalar). Padded positions come back as exactly 0 with zero gradient. Rows
    whose clipped mass is already within budget are returned clipped and otherwise unchanged.
    Runs in float32 or wider even under autocast, because the cumulative sums lose the budget in fp16.
    """
    mask = mask.bool()
    k = torch.as_tensor(k, dtype=a.dtype, device=a.device).expand(a.shape[0])
    out_dtype = a.dtype
    work = torch.promote_types(a.dtype, torch.float32)
    with torch.autocast(device_type=a.device.type, enabled=False):
        a32, k32 = a.to(work), k.to(work)
        if bool(((a32 >= 0) & (a32 <= 1) | ~mask).all()):
            w = _project_unit_box_inputs(a32, mask, k32)
        else:
            w = _project_general(a32, mask, k32)
    return w.to(out_dtype)
