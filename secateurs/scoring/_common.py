"""Helpers shared by criteria: per-index reductions, unit sums, statistics lookup, fallbacks."""

from __future__ import annotations

import numpy as np
import torch

from secateurs.calibration.layouts import member_side
from secateurs.calibration.stats import ChannelStats, Statistics
from secateurs.errors import InvalidArgumentError
from secateurs.graph.analysis import unit_member_norms
from secateurs.graph.groups import Group, Member
from secateurs.scoring.registry import ScoringContext


def per_index(t: torch.Tensor, dim: int) -> np.ndarray:
    """Sum of ``t`` over every dim but ``dim``, as float64 numpy."""
    t = t.detach().to(torch.float64)
    other = [d for d in range(t.ndim) if d != dim]
    return (t.sum(dim=other) if other else t).cpu().numpy()


def to_units(group: Group, member: Member, values: np.ndarray) -> np.ndarray:
    """Per-unit sum of per-index ``values`` along ``member.dim``."""
    return np.asarray(values)[group.unit_index[member.cls]].sum(axis=1)


def param_members(group: Group, ctx: ScoringContext) -> list[tuple[Member, torch.Tensor]]:
    """Members that are trainable parameters with real (non-meta) values."""
    out = []
    for m in group.members:
        t = ctx.params.get(m.fqn)
        if t is not None and not t.is_meta:
            out.append((m, t))
    return out


def member_stats(ctx: ScoringContext, member: Member, side: str | None = None) -> tuple[str, ChannelStats] | None:
    """Activation statistics indexed like ``member.dim``: input channels for a consumer's input dim
    (Linear/Conv weight dim 1), output channels for an output dim (weight dim 0, bias, norm affine)."""
    if ctx.stats is None:
        return None
    module, attr = ctx.module(member.fqn)
    if module is None:
        return None
    found = member_side(module, attr, member.dim)
    if found is None or (side is not None and found != side):
        return None
    path = member.fqn.rpartition(".")[0]
    s = (ctx.stats.inputs if found == "in" else ctx.stats.outputs).get(path)
    t = ctx.tensors.get(member.fqn)
    if s is None or t is None:
        return None
    size = int(t.shape[member.dim])
    if len(s.sum) % size:
        return None
    return found, s.folded(size)


def require_stats(ctx: ScoringContext, name: str, grads: str | None = None) -> Statistics:
    """The calibration statistics, with gradient accumulator ``grads`` ("sum" or "sq") when asked."""
    if ctx.stats is None or (grads is not None and not ctx.stats.has(grads)):
        need = "calibration= batches and loss_fn=lambda output, batch: loss" if grads else "calibration= batches"
        raise InvalidArgumentError(f"importance {name!r} needs data: pass {need}")
    return ctx.stats


def fallback(group: Group, ctx: ScoringContext, name: str, why: str) -> np.ndarray:
    """L2 weight magnitude for a group a data criterion cannot read, with a note in the plan."""
    ctx.notes.append(f"{name}: group {group.name} {why}; scored by L2 weight magnitude instead")
    return np.sqrt(unit_member_norms(group, ctx.params, 2.0))
