"""Wanda (Sun et al., 2023) for structures: |W_ij| * ||X_j|| summed over the slices a unit removes.

||X_j|| is the L2 norm of input channel j of the layer over all calibration tokens/pixels. A unit is
scored where consumer layers read it: the columns it removes from Linear/Conv weights (input dims),
each weighted by that layer's input norm. A group with no consumer input dim is scored on the rows it
removes instead (output dims, sum_j |W_ij| * ||X_j||).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from secateurs.calibration.layouts import layout_for
from secateurs.graph.groups import Group
from secateurs.scoring._common import fallback, param_members, per_index, require_stats, to_units
from secateurs.scoring.registry import ScoringContext, register_criterion


def weighted_weight(module: nn.Module, weight: torch.Tensor, in_norm: torch.Tensor, in_dim: int) -> torch.Tensor | None:
    """|W| scaled by per-input-channel values, grouped convolutions included; None when shapes do not fit."""
    w = weight.detach().to(torch.float64)
    w = w.abs_() if w.data_ptr() != weight.data_ptr() else w.abs()  # one float64 copy, never the weights themselves
    groups = int(getattr(module, "groups", 1))
    per_group = w.shape[in_dim]
    if in_norm.numel() != per_group * groups:
        return None
    if groups == 1:
        shape = [1] * w.ndim
        shape[in_dim] = -1
        return w.mul_(in_norm.to(w).reshape(shape))  # in place: ``w`` is this function's own copy
    if in_dim != 1:
        return None
    out = w.shape[0]
    wg = w.reshape(groups, out // groups, *w.shape[1:])
    xg = in_norm.to(w).reshape(groups, 1, per_group, *([1] * (w.ndim - 2)))
    return (wg * xg).reshape(w.shape)


@dataclass
class Wanda:
    name: str = "wanda"
    needs_data: bool = True

    def scores(self, group: Group, ctx: ScoringContext) -> np.ndarray:
        stats = require_stats(ctx, self.name)
        for side in ("in", "out"):
            total, found = np.zeros(group.n_units), False
            for m, t in param_members(group, ctx):
                module, attr = ctx.module(m.fqn)
                layout = layout_for(module) if module is not None else None
                s = stats.inputs.get(m.fqn.rpartition(".")[0])
                if attr != "weight" or layout is None or layout.weight_in is None or s is None:
                    continue
                if m.dim != (layout.weight_in if side == "in" else layout.weight_out):
                    continue
                scored = weighted_weight(module, t, s.norm, layout.weight_in)  # type: ignore[arg-type]
                if scored is not None:
                    total += to_units(group, m, per_index(scored, m.dim))
                    found = True
            if found:
                return total
        return fallback(group, ctx, self.name, "has no Linear/Conv weight with recorded inputs")


@register_criterion("wanda")
def wanda() -> Wanda:
    return Wanda()
