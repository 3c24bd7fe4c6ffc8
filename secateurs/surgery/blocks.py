"""Remove whole blocks in place: rebuild the container without them, renumber ``layer_idx``, sync configs; and merge
runs of blocks into their first (LaCo) before the rest of each run is removed.

The container gets a new ``_modules`` dict (never the old one mutated), and a merged block gets new Parameter
objects, so the transactional snapshot of ``apply`` restores both by putting the old dicts back.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
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


def merged_parameters(blocks: Sequence[nn.Module], run: Sequence[int]) -> dict[str, torch.Tensor]:
    """LaCo's parameter merge of the blocks ``run`` (consecutive indices) into the first, l = run[0]:
    ``theta_l + sum_k (theta_k - theta_l)`` for every parameter of block l, from the others' same-named ones."""
    first = blocks[run[0]]
    others = [dict(blocks[k].named_parameters()) for k in run[1:]]
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, base in first.named_parameters():
            merged = base.detach().clone()
            for k, params in zip(run[1:], others, strict=True):
                other = params.get(name)
                if other is None or other.shape != base.shape:
                    raise ApplyError(f"cannot merge block {k} into block {run[0]}: its parameter {name!r} is "
                                     f"{None if other is None else tuple(other.shape)}, block {run[0]}'s is "
                                     f"{tuple(base.shape)}; merged blocks must have the same parameters")
                merged += other.detach().to(base.dtype) - base.detach()
            out[name] = merged
    return out


def merge_layers_(model: nn.Module, merged: dict[str, list[list[int]]]) -> None:
    """Write each run's merged parameters into its first block (new Parameter objects; the others are dropped after)."""
    for path, runs in merged.items():
        blocks = container(model, path)
        for run in runs:
            if any(not 0 <= i < len(blocks) for i in run):
                raise ApplyError(f"plan merges blocks {run} of {path!r}, which has {len(blocks)}")
            values = merged_parameters(list(blocks), run)
            first = blocks[run[0]]
            for name, value in values.items():
                owner_path, _, attr = name.rpartition(".")
                owner = first.get_submodule(owner_path) if owner_path else first
                old = owner._parameters[attr]
                owner._parameters[attr] = nn.Parameter(value, requires_grad=bool(old is not None and old.requires_grad))
