"""N:M masks as pure tensor functions: keep the ``n`` best of every ``m`` consecutive input weights."""

from __future__ import annotations

import torch

from secateurs.errors import InvalidArgumentError


def n_of_m_mask(scores: torch.Tensor, n: int = 2, m: int = 4) -> torch.Tensor:
    """Boolean mask of ``scores`` (out, in) keeping the ``n`` largest of every ``m`` along the input dim.

    Ties keep the earlier position, so equal scores give a deterministic mask.
    """
    if scores.ndim != 2:
        raise InvalidArgumentError(f"{n}:{m} masks need a 2-D (out, in) score matrix, got shape {tuple(scores.shape)}")
    rows, cols = scores.shape
    if cols % m:
        raise InvalidArgumentError(f"{n}:{m} masks need the input dim to be a multiple of {m}, got {cols}")
    blocks = scores.detach().reshape(rows, cols // m, m).to(torch.float64)
    # stable descending order: sort by -score with a stable sort so ties keep the earlier index
    order = torch.sort(-blocks, dim=-1, stable=True).indices[..., :n]
    mask = torch.zeros_like(blocks, dtype=torch.bool)
    mask.scatter_(-1, order, True)
    return mask.reshape(rows, cols)


def is_n_of_m(mask: torch.Tensor, n: int = 2, m: int = 4, in_dim: int = 1) -> bool:
    """True when every group of ``m`` consecutive input positions (along ``in_dim``) keeps exactly ``n``."""
    if mask.ndim == 2 and in_dim == 0:
        mask = mask.t()
    if mask.ndim != 2 or mask.shape[1] % m:
        return False
    return bool((mask.reshape(mask.shape[0], -1, m).sum(-1) == n).all())


def zero_fraction(weight: torch.Tensor) -> float:
    return float((weight == 0).sum()) / max(1, weight.numel())
