"""Output reconstruction error (ThiNet / channel selection with a least-squares refit).

A unit is scored, in every consumer layer that reads it (a Linear/Conv/Conv1D weight whose input dim
the unit shrinks), by how much the layer's output error grows when the unit's input features B are
removed and the remaining weights and bias are refit by least squares:

    score = tr(W_B · S_B · W_Bᵀ),   S_B = ((Σ + λI)⁻¹)_BB⁻¹

where Σ is the covariance of the layer's input features over the calibration data (unfolded k×k
patches for convolutions) and S_B the Schur complement: the part of x_B that the other features
cannot predict linearly. This is exactly what ``compensate="lstsq"`` removes when the unit goes alone
(the OBS formula for a block), so a unit that is zero, constant (its mean moves into the bias), or a
linear combination of the others scores 0. Units are scored independently rather than by ThiNet's
greedy search: a greedy search must re-score after each removal, which the score → select pipeline
does not do; pair this criterion with ``compensate="lstsq"``. The covariance takes F²·8 bytes and one
F×F inverse per consumer layer (F = in_features, or C_in·k·k). Layers it cannot read (grouped
convolutions, no recorded inputs) fall back to L2 magnitude with a note.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from secateurs.calibration.features import feature_map
from secateurs.graph.groups import Group
from secateurs.scoring._common import fallback, param_members, require_stats
from secateurs.scoring.registry import ScoringContext, register_criterion

RIDGE = 1e-6  # damping of Σ, relative to its mean diagonal


def _consumer(model: nn.Module, fqn: str, dim: int) -> str | None:
    path, _, attr = fqn.rpartition(".")
    if attr != "weight":
        return None
    try:
        module = model.get_submodule(path)
    except AttributeError:
        return None
    fmap = feature_map(module)
    if fmap is None or fmap.in_dim != dim or fmap.groups != 1 or fmap.rows is None:
        return None
    return path


def _inverse(cov: torch.Tensor) -> torch.Tensor:
    n = cov.shape[0]
    lam = RIDGE * float(torch.trace(cov)) / max(n, 1)
    return torch.linalg.inv(cov + max(lam, 1e-12) * torch.eye(n, dtype=cov.dtype, device=cov.device))


def unit_errors(w: torch.Tensor, inv: torch.Tensor, features_of: Callable[[torch.Tensor], torch.Tensor],
                unit_channels: np.ndarray, chunk: int = 512) -> np.ndarray:
    """tr(W_B S_B W_Bᵀ) for every unit's feature block B (batched over units, ``chunk`` at a time)."""
    out = np.zeros(len(unit_channels))
    blocks = features_of(torch.as_tensor(unit_channels).reshape(-1)).reshape(len(unit_channels), -1)
    for start in range(0, len(blocks), chunk):
        b = blocks[start:start + chunk]
        schur = torch.linalg.inv(inv[b[:, :, None], b[:, None, :]])  # (units, |B|, |B|)
        w_b = w[:, b].permute(1, 0, 2)  # (units, out, |B|)
        err = torch.einsum("uoi,uij,uoj->u", w_b, schur, w_b)
        out[start:start + len(b)] = err.clamp_min(0).cpu().numpy()
    return out


@dataclass
class Reconstruction:
    name: str = "reconstruction"
    needs_data: bool = True

    def moment_paths(self, model: nn.Module, groups: list[Group]) -> list[str]:
        """Modules whose input Gram matrices calibration must record for these groups."""
        found = {_consumer(model, m.fqn, m.dim) for g in groups for m in g.members}
        return sorted(p for p in found if p is not None)

    def scores(self, group: Group, ctx: ScoringContext) -> np.ndarray:
        stats = require_stats(ctx, self.name)
        total, found = np.zeros(group.n_units), False
        for m, t in param_members(group, ctx):
            path = _consumer(ctx.model, m.fqn, m.dim)
            moments = stats.moments.get(path) if path is not None else None
            if path is None or moments is None or moments.gram is None:
                continue
            fmap = feature_map(ctx.model.get_submodule(path))
            assert fmap is not None  # _consumer checked it
            key = f"_reconstruction_inv:{id(moments)}"  # layers reading the same input share moments
            inv = ctx.extras.get(key)
            if inv is None:
                inv = ctx.extras[key] = _inverse(moments.covariance())
            total += unit_errors(fmap.matrix(t).to(inv.device), inv, fmap.features_of, group.unit_index[m.cls])
            found = True
        if found:
            return total
        return fallback(group, ctx, self.name, "has no Linear/Conv consumer with recorded input moments")


@register_criterion("reconstruction")
def reconstruction() -> Reconstruction:
    return Reconstruction()
