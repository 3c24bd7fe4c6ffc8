"""Least-squares refit: W', b' = argmin E‖W x + b − (W' x_K + b')‖² over the calibration inputs.

With a bias (existing or created) the fit is centred: W'_K = W_K + W_R Σ_RK (Σ_KK + λI)⁻¹ and
b' = b + W_R μ_R − W_R Σ_RK (Σ_KK + λI)⁻¹ μ_K (Σ the covariance, μ the mean); without one the uncentred
second moment replaces Σ and the bias stays. λ = ridge · trace(Σ_KK)/|K| (a damping relative to the
mean diagonal, as SparseGPT/GPTQ do). For convolutions x is an unfolded k×k patch. Grouped/depthwise
convolutions fall back to bias compensation (the per-group fit is not implemented).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from secateurs.calibration.moments import Moments
from secateurs.compensation.bias import BiasCompensation
from secateurs.compensation.consumers import Consumer
from secateurs.compensation.methods import Fit, register_method


def solve_spd(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a⁻¹ b for a symmetric positive (semi)definite ``a``; least squares when Cholesky fails."""
    chol, info = torch.linalg.cholesky_ex(a)
    if int(info) == 0:
        return torch.cholesky_solve(b, chol)
    return torch.linalg.lstsq(a, b).solution


def damped(a: torch.Tensor, ridge: float) -> torch.Tensor:
    n = a.shape[0]
    lam = ridge * float(torch.trace(a)) / max(n, 1)
    if not lam > 0:
        lam = 1e-12
    return a + lam * torch.eye(n, dtype=a.dtype, device=a.device)


@dataclass
class LeastSquares:
    name: str = "lstsq"
    needs_gram: bool = True

    def fit(self, c: Consumer, m: Moments, *, ridge: float, with_bias: bool) -> Fit:
        if c.fmap.groups != 1:
            fit = BiasCompensation().fit(c, m, ridge=ridge, with_bias=with_bias)
            fit.note = f"{c.path}: grouped convolution, least squares not implemented; bias compensation used"
            return fit
        if c.tied:
            fit = BiasCompensation().fit(c, m, ridge=ridge, with_bias=with_bias)
            fit.note = f"{c.path}: weight is tied to another parameter; only the bias was compensated"
            return fit
        kept, removed = c.columns()
        s = m.covariance().cpu() if with_bias else m.second_moment().cpu()
        w_k, w_r = c.weight[:, kept], c.weight[:, removed]
        t = solve_spd(damped(s[kept][:, kept], ridge), s[removed][:, kept].T).T  # Σ_RK (Σ_KK + λI)⁻¹
        w_new = w_k + w_r @ t
        if not with_bias:
            return Fit(w_new, None)
        mu = m.mean.cpu()
        base = c.bias if c.bias is not None else torch.zeros(c.weight.shape[0], dtype=torch.float64)
        return Fit(w_new, base + w_r @ (mu[removed] - t @ mu[kept]))


@register_method("lstsq")
def lstsq() -> LeastSquares:
    return LeastSquares()
