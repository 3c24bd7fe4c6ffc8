"""Overlapping groups: only one way of pruning the same parameter dims is eligible at a time.

A grouped conv offers two unit shapes for the same weights: whole groups (g units) and one channel
in every group (C/g units). Pruning both by a uniform ratio would compound it (0.5 -> 25% kept).
Among groups of one kind whose members share a parameter dim, the eligible one is: an exact one
over an inexact one (GroupNorm: whole groups are exact), then one that keeps a grouped conv's
group count (as ResNeXt/RegNet are designed, and as Torch-Pruning does), then the finer one.
"""

from __future__ import annotations

import numpy as np

from secateurs.graph.groups import Group


def _elements(g: Group) -> dict[int, set[int]]:
    """Class -> every index some unit of the group removes."""
    return {c: set(np.unique(idx).tolist()) for c, idx in g.unit_index.items()}


def _overlaps(a: dict[int, set[int]], b: dict[int, set[int]]) -> bool:
    return any(a[c] & b[c] for c in a.keys() & b.keys())


def prefer_finest(groups: list[Group]) -> list[Group]:
    ranked = sorted(groups, key=lambda g: (not g.exact, "conv_groups" in g.tags, -g.n_units, g.id))
    chosen: list[tuple[Group, dict[int, set[int]]]] = []
    for g in ranked:
        elems = _elements(g)
        if any(c.kind == g.kind and _overlaps(elems, e) for c, e in chosen):
            continue
        chosen.append((g, elems))
    ids = {g.id for g, _ in chosen}
    return [g for g in groups if g.id in ids]
