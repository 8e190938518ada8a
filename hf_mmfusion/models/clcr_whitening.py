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

"""Whitened cross-correlation ``||S_xx^{-1/2} S_xy S_yy^{-1/2}||_F^2`` with stable gradients.

The eigen-decomposition form has ``1 / (lambda_i - lambda_j)`` in its backward pass and returns NaN
for repeated or zero eigenvalues, so the same quantity is computed as a trace with Cholesky solves
on diagonally loaded covariances. It is finite for two rows, duplicated columns and zero blocks.

With ``N`` rows against ``p`` dimensions the statistic of independent data is not 0 but about
``p / N`` (every sample covariance correlates by chance). ``null_correction=True`` subtracts the value
of the same rows with one side shifted by half the rows, which has the same covariances and no pairing:
an estimate of that chance level, detached, so the corrected value is about 0 for independent data at
any ``N`` while its gradient stays that of the raw statistic.
"""

from __future__ import annotations

import torch


def _loaded_cholesky(cov: torch.Tensor, eps_rel: float) -> torch.Tensor:
    dim = cov.shape[-1]
    eye = torch.eye(dim, dtype=cov.dtype, device=cov.device)
    load = eps_rel * torch.diagonal(cov).mean().detach() + 1e-6
    for _ in range(4):
        chol, info = torch.linalg.cholesky_ex(cov + load * eye)
        if int(info) == 0:
            return chol
        load = load * 10 + 1e-4
    return torch.linalg.cholesky(cov + load * eye)


def _null_pairing(n: int, device) -> torch.Tensor:
    """Row ``i`` of one side meets row ``i + n // 2`` of the other: a fixed shuffle without fixed points.

    Rows come sample by sample, so half the batch apart they belong to different samples and carry no
    pairing; a fixed shift (rather than a random one) keeps every forward pass deterministic and draws
    nothing from the random number generator that dropout and data order use.
    """
    return torch.arange(n, device=device).roll(n // 2)


def whitened_xcorr_sq(
    x: torch.Tensor, y: torch.Tensor, eps_rel: float = 0.1, normalize: bool = True, null_correction: bool = False
) -> torch.Tensor:
    """Squared Frobenius norm of the whitened cross-correlation of the rows of ``x[N, p]`` and ``y[N, q]``
    (CLCR Eq. 6: ``||Sigma_xx^-1/2 Sigma_xy Sigma_yy^-1/2||_F^2``).

    With ``normalize`` the value is divided by ``min(p, q)``: a mean squared canonical correlation in
    ``[0, 1]``. Fewer than two rows carry no correlation and give 0 (still attached to the graph).
    ``null_correction`` subtracts the detached value of a shifted pairing (module docstring).
    Computed in float32 or wider with autocast off.
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"whitened_xcorr_sq needs paired rows, got {x.shape[0]} and {y.shape[0]}")
    if x.shape[0] < 2:
        return (x.sum() + y.sum()) * 0.0
    work = torch.promote_types(x.dtype, torch.float32)
    with torch.autocast(device_type=x.device.type, enabled=False):
        x, y = x.to(work), y.to(work)
        n = x.shape[0]
        xc, yc = x - x.mean(0, keepdim=True), y - y.mean(0, keepdim=True)
        sxx, syy, sxy = xc.T @ xc / (n - 1), yc.T @ yc / (n - 1), xc.T @ yc / (n - 1)
        lx, ly = _loaded_cholesky(sxx, eps_rel), _loaded_cholesky(syy, eps_rel)
        # trace(Sxx^-1 Sxy Syy^-1 Syx) == ||Sxx^-1/2 Sxy Syy^-1/2||_F^2
        value = torch.trace(torch.cholesky_solve(sxy, lx) @ torch.cholesky_solve(sxy.T, ly))
        if null_correction and n > 2:
            with torch.no_grad():
                sxy0 = xc.T @ yc[_null_pairing(n, x.device)] / (n - 1)
                value = value - torch.trace(torch.cholesky_solve(sxy0, lx) @ torch.cholesky_solve(sxy0.T, ly))
        if normalize:
            value = value / min(x.shape[1], y.shape[1])
    return value


def whitened_xcorr_sq_pairs(
    blocks: list[torch.Tensor],
    pairs: list[tuple[int, int]],
    eps_rel: float = 0.1,
    normalize: bool = True,
    null_correction: bool = False,
) -> torch.Tensor:
    """``whitened_xcorr_sq(blocks[i], blocks[j])`` for every ``(i, j)`` in ``pairs`` at once -> ``[len(pairs)]``.

    ``blocks`` are ``[N, p_i]`` matrices over the same N rows. Each block is centred and whitened once
    (``Z_i = X_i L_i^{-T}`` with its loaded Cholesky factor ``L_i``); then
    ``trace(S_ii^-1 S_ij S_jj^-1 S_ji) = ||Z_i^T Z_j||_F^2 / (N - 1)^2``, so a block shared by several pairs
    is factorised once. Same values and gradients as the pairwise function; with ``null_correction`` one
    shifted pairing serves every pair.
    """
    if not pairs:
        return blocks[0].new_zeros(0)
    n = blocks[0].shape[0]
    if any(b.shape[0] != n for b in blocks):
        raise ValueError(f"whitened_xcorr_sq_pairs needs blocks with the same rows, got {[b.shape[0] for b in blocks]}")
    if n < 2:
        return torch.stack([(blocks[i].sum() + blocks[j].sum()) * 0.0 for i, j in pairs])
    work = torch.promote_types(blocks[0].dtype, torch.float32)
    with torch.autocast(device_type=blocks[0].device.type, enabled=False):
        whitened = {}
        for i in sorted({i for pair in pairs for i in pair}):
            x = blocks[i].to(work)
            xc = x - x.mean(0, keepdim=True)
            chol = _loaded_cholesky(xc.T @ xc / (n - 1), eps_rel)
            whitened[i] = torch.linalg.solve_triangular(chol, xc.T, upper=False)     # Z_i^T [p_i, N]
        perm = _null_pairing(n, blocks[0].device) if null_correction and n > 2 else None
        values = []
        for i, j in pairs:
            value = (whitened[i] @ whitened[j].T).square().sum() / (n - 1) ** 2
            if perm is not None:
                with torch.no_grad():
                    value = value - (whitened[i] @ whitened[j][:, perm].T).square().sum() / (n - 1) ** 2
            if normalize:
                value = value / min(blocks[i].shape[1], blocks[j].shape[1])
            values.append(value)
    return torch.stack(values)
