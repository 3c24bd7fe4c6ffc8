"""Turn per-unit scores into removal counts: uniform (local), global ranking, and budget targets."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np

from secateurs.errors import TargetUnreachableError
from secateurs.graph.groups import Group
from secateurs.selection.normalize import normalize
from secateurs.selection.select import Limits

Counts = dict[int, int]  # group id -> units removed
TOLERANCE = 0.05  # targets are met within +-5% of the requested kept fraction


def local_counts(groups: list[Group], ratio_of: Callable[[Group], float], limits: Limits) -> Counts:
    return {g.id: limits.rounded(g, math.floor(ratio_of(g) * g.n_units + 1e-9)) for g in groups}


class GlobalPool:
    """Units of several groups ranked together on per-group normalised scores.

    ``order`` lists the group of each unit in removal order (lowest normalised score first, ties by
    group then unit), already stopping each group at its cap, so removing the first ``k`` entries is
    one bincount.
    """

    def __init__(self, groups: list[Group], scores: Mapping[int, np.ndarray], how: str, limits: Limits):
        self.groups, self.limits = groups, limits
        self.total_units = sum(g.n_units for g in groups)
        if not groups:
            self.order = np.zeros(0, dtype=np.int64)
            return
        norm = [normalize(scores[g.id], how) for g in groups]
        values = np.concatenate(norm)
        owner = np.concatenate([np.full(g.n_units, i) for i, g in enumerate(groups)])
        unit = np.concatenate([np.arange(g.n_units) for g in groups])
        ranked = owner[np.lexsort((unit, owner, values))]
        caps = np.array([limits.cap(g) for g in groups])
        seen = np.zeros(len(groups), dtype=np.int64)
        keep = np.zeros(len(ranked), dtype=bool)
        for j, i in enumerate(ranked.tolist()):
            if seen[i] < caps[i]:
                seen[i] += 1
                keep[j] = True
        self.order = ranked[keep]

    @property
    def size(self) -> int:
        return len(self.order)

    def counts(self, k: int) -> Counts:
        raw = np.bincount(self.order[: max(0, min(k, self.size))], minlength=len(self.groups))
        return {g.id: self.limits.rounded(g, int(n)) for g, n in zip(self.groups, raw.tolist(), strict=True)}


def global_counts(groups: list[Group], scores: Mapping[int, np.ndarray], how: str, limits: Limits,
                  ratios: Mapping[str, float], key: Callable[[Group], str] | None = None) -> Counts:
    """Remove ``ratios[kind]`` of all units of each kind (``key(group)``, the group's kind by default), wherever
    they rank lowest."""
    counts: Counts = {}
    for kind, r in ratios.items():
        members = [g for g in groups if (key(g) if key is not None else g.kind) == kind]
        pool = GlobalPool(members, scores, how, limits)
        counts.update(pool.counts(math.floor(r * pool.total_units + 1e-9)))
    return counts


def solve_targets(
    counts_at: Callable[[float], Counts],
    kept: Callable[[Counts], dict[str, float]],
    targets: Mapping[str, float],
    steps: int = 40,
) -> tuple[float, Counts]:
    """Strength x in [0, 1] whose counts keep closest to each target fraction (bisection per target; with
    several targets the strongest, so every metric ends at or below its target).

    Raises TargetUnreachableError when even the strongest allowed pruning keeps too much.
    """
    strongest = kept(counts_at(1.0))
    for metric, target in targets.items():
        if strongest[metric] > target * (1 + TOLERANCE):
            raise TargetUnreachableError(
                f"{metric}={target:g} cannot be reached: pruning every eligible group as far as allowed keeps "
                f"{strongest[metric]:.3f} of the {metric}. Lower min_keep, raise max_ratio, ignore fewer modules, "
                f"or ask for a larger fraction"
            )
    x_needed = 0.0
    for metric, target in targets.items():
        lo, hi = 0.0, 1.0
        if kept(counts_at(0.0))[metric] <= target:
            continue
        for _ in range(steps):
            mid = (lo + hi) / 2
            if kept(counts_at(mid))[metric] <= target:
                hi = mid
            else:
                lo = mid
        k_lo, k_hi = kept(counts_at(lo))[metric], kept(counts_at(hi))[metric]
        x_needed = max(x_needed, lo if abs(k_lo - target) < abs(k_hi - target) else hi)
    return x_needed, counts_at(x_needed)
