"""Whitened cross-correlation ``||S_xx^{-1/2} S_xy S_yy^{-1/2}||_F^2`` with stable gradients.

The eigen-decomposition form has ``1 / (lambda_i - lambda_j)`` in its backward pass and returns NaN
for repeated or zero eigenvalues, so the same quantity is computed as a trace with Cholesky solves
on diagonally loaded covariances. It is finite for two rows, duplicated columns and zero blocks.
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


def whitened_xcorr_sq(x: torch.Tensor, y: torch.Tensor, eps_rel: float = 0.1, normalize: bool = True) -> torch.Tensor:
    """Squared Frobenius norm of the whitened cross-correlation of the rows of ``x[N, p]`` and ``y[N, q]``.

    With ``normalize`` the value is divided by ``min(p, q)``: a mean squared canonical correlation in
    ``[0, 1]``. Fewer than two rows carry no correlation and give 0 (still attached to the graph).
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
        if normalize:
            value = value / min(x.shape[1], y.shape[1])
    return value
