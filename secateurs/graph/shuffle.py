"""Channel shuffles: a dimension split into factors that are merged back in another order.

``x.view(n, g, c // g, h, w).transpose(1, 2).reshape(n, c, h, w)`` splits the channels into ``g x c/g`` and
merges them back as ``c/g x g``. Both factors look prunable, but the group count ``g`` is a number forward()
keeps (an argument or attribute; the graph only shows the constant), while ``c // g`` is computed from the
shape. Removing a whole group would need ``g - 1`` in that view, which no surgery writes: the pruned model
would run and shuffle its channels differently from the masked original. So, as for equal chunks, the leading
factors of the split are frozen and units remove the same position from every group, which any ``g`` keeps.
"""

from __future__ import annotations

import numpy as np

from secateurs.graph.couple import CoupledGraph


def _where(coupled: CoupledGraph, space: int) -> str:
    node = coupled.captured.by_name.get(coupled.rel.owners[space][0])
    return node.where() if node is not None else f"node '{coupled.rel.owners[space][0]}'"


def shuffled_factors(coupled: CoupledGraph, space_class: np.ndarray, frozen: set[int]) -> dict[int, list[str]]:
    """Class -> reasons, for the leading free factors of every split that a later product merges in another order."""
    rel = coupled.rel
    products = [(flat, [int(space_class[f]) for f in factors], factors) for flat, factors in rel.products]
    by_factor: dict[int, list[int]] = {}
    for k, (_, classes, _) in enumerate(products):
        for c in classes:
            by_factor.setdefault(c, []).append(k)
    out: dict[int, list[str]] = {}
    for i, (_, first, spaces) in enumerate(products):
        free = [c for c in first if c not in frozen]
        if len(free) < 2:
            continue
        for j in sorted({j for c in free for j in by_factor[c] if j > i}):
            flat_j, second, _ = products[j]
            shared = [c for c in free if c in second]
            if len(shared) < 2 or shared == [c for c in second if c in shared]:
                continue
            reason = (f"channel shuffle: the split at {_where(coupled, spaces[0])} is merged back in another order at "
                      f"{_where(coupled, flat_j)}; its group count is a size forward() keeps, so units remove the "
                      f"same position from every group")
            for c in shared[:-1]:
                out.setdefault(c, []).append(reason)
    return out
