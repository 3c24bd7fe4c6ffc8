"""Say when a ratio request prunes nothing: a unit kind no group has, or groups too small for the ratio."""

from __future__ import annotations

import warnings
from collections.abc import Mapping

from secateurs.errors import NothingPrunedWarning
from secateurs.graph.groups import Group
from secateurs.selection.select import ratio_key

#: what each ratio key means, for the message
_MEANING = {
    "ffn": "intermediate widths (MLP neurons between two weighted layers, found from the graph)",
    "hidden": "residual-stream widths",
    "heads": "attention heads (whole key/value groups under GQA)",
    "query_heads": "query heads within key/value groups",
    "head_dim": "channels within attention heads",
    "channels": "channels",
    "experts": "whole mixture-of-experts experts",
}


def warn_unmet(ratios: Mapping[str, float], candidates: list[Group], counts: Mapping[int, int],
               explicit: bool = True, constrained: frozenset[int] = frozenset()) -> list[str]:
    """Warn (``NothingPrunedWarning``) for each unit kind named in a dict ratio (``explicit``) that removes nothing;
    for a plain float ratio, only when nothing at all is removed. ``constrained``: ids of groups whose counts a
    count constraint (the model's config) moved."""
    if not explicit:
        if any(n > 0 for n in counts.values()) or not any(r > 0 for r in ratios.values()):
            return []
        message = ("the ratio prunes nothing: " + (f"{len(candidates)} prunable groups, each too small for the ratio"
                                                   if candidates else "the model has no prunable group"))
        warnings.warn(message, NothingPrunedWarning, stacklevel=5)
        return [message]
    by_key: dict[str, list[Group]] = {}
    for g in candidates:
        by_key.setdefault(ratio_key(g, ratios), []).append(g)
    messages = []
    for key, r in ratios.items():
        if r <= 0 or (key == "channels" and "channels" not in by_key and by_key):
            continue
        groups = by_key.get(key, [])
        if any(counts.get(g.id, 0) > 0 for g in groups):
            continue
        if not groups:
            why = f"the model has no prunable {_MEANING.get(key, key)}"
        elif all(g.id in constrained for g in groups):
            why = ("the model's config can express no smaller count (the count-constraint warning says why; "
                   "valid_heads=False keeps the counts asked)")
        else:
            smallest = min(g.n_units for g in groups)
            why = (f"{len(groups)} groups have as few as {smallest} units, and removing {r:g} of them rounds down to "
                   "none (raise the ratio, or lower min_keep/round_to)")
        messages.append(f"ratio {{{key!r}: {r:g}}} prunes nothing: {why}")
    for message in messages:
        warnings.warn(message, NothingPrunedWarning, stacklevel=5)
    return messages
