"""Overlapping groups: only one way of pruning the same parameter dims is eligible at a time.

A grouped conv offers two unit shapes for the same weights: whole groups (g units) and one channel
in every group (C/g units). Pruning both by a uniform ratio would compound it (0.5 -> 25% kept).
Among groups of one kind whose members share a parameter dim, the eligible one is: an exact one
over an inexact one (GroupNorm: whole groups are exact), then one that keeps a grouped conv's
group count (as ResNeXt/RegNet are designed, and as Torch-Pruning does), then the finer one.
"""

from __future__ import annotations

from secateurs.graph.groups import Group


def _dims(g: Group) -> set[tuple[str, int]]:
    return {(m.fqn, m.dim) for m in g.members}


def prefer_finest(groups: list[Group]) -> list[Group]:
    ranked = sorted(groups, key=lambda g: (not g.exact, "conv_groups" in g.tags, -g.n_units, g.id))
    taken: dict[str, set[tuple[str, int]]] = {}
    chosen: set[int] = set()
    for g in ranked:
        dims = _dims(g)
        used = taken.setdefault(g.kind, set())
        if dims & used:
            continue
        used |= dims
        chosen.add(g.id)
    return [g for g in groups if g.id in chosen]
