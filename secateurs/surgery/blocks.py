"""Remove whole blocks in place: rebuild the container without them, renumber ``layer_idx``, sync configs.

The container gets a new ``_modules`` dict (never the old one mutated), so the transactional snapshot
of ``apply`` restores it by putting the old dict back.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from secateurs.errors import ApplyError
from secateurs.graph.blocks import adapter_for, container


def drop_layers_(model: nn.Module, dropped: dict[str, list[int]]) -> None:
    adapter = adapter_for(model)
    for path, gone in dropped.items():
        blocks = container(model, path)
        n = len(blocks)
        if any(not 0 <= i < n for i in gone):
            raise ApplyError(f"plan drops blocks {gone} of {path!r}, which has {n}")
        kept = [i for i in range(n) if i not in set(gone)]
        old = list(blocks._modules.values())
        blocks.__dict__["_modules"] = OrderedDict((str(j), old[i]) for j, i in enumerate(kept))
        for j, i in enumerate(kept):
            _renumber(old[i], j)
        if adapter is not None:
            adapter.after_drop(model, path, kept)


def _renumber(block: nn.Module | None, index: int) -> None:
    """Cache bookkeeping (HF attention's ``layer_idx``) must follow the block's new position."""
    if block is None:
        return
    for m in block.modules():
        if isinstance(getattr(m, "layer_idx", None), int) and not isinstance(m.layer_idx, bool):
            setattr(m, "layer_idx", index)  # noqa: B010  (nn.Module attribute typing)
