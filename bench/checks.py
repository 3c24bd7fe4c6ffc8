"""A tool-neutral check of a pruned model against its unpruned original.

It needs nothing from the tool that pruned: each pruned tensor must equal the original tensor
indexed by one list of kept indices per dimension. Those lists are recovered by locating the
pruned values inside the original (weights are random, so values are unique), then checked with
``torch.equal``. The original is then run with every removed index zeroed ("masked") and compared
with the pruned model.

Masking equals pruning only where no kept value depends on how many channels there are:
LayerNorm/GroupNorm statistics and the attention scale 1/sqrt(head_dim) do. When such a module
lost channels the check is structural (runs, same output shapes) and the masked error is reported
for information only.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

NORMALIZING = (nn.LayerNorm, nn.GroupNorm, nn.MultiheadAttention)


class NotASubTensor(ValueError):
    """The pruned tensor is not the original indexed by kept indices per dimension."""


def _ambiguous(candidates: torch.Tensor, low: int, high: int, d: int) -> int:
    """A value found more than once: kept indices are sorted (both tools keep order), so it must lie
    strictly between its neighbours' indices; accept it only when exactly one candidate does."""
    inside = candidates[(candidates > low) & (candidates < high)]
    if inside.numel() != 1:
        raise NotASubTensor(f"cannot tell which of {candidates.numel()} equal slices along dim {d} were kept")
    return int(inside[0])


def kept_indices(orig: torch.Tensor, new: torch.Tensor) -> dict[int, torch.Tensor]:
    """dim -> kept indices of ``orig`` such that indexing ``orig`` gives exactly ``new``."""
    if orig.dim() != new.dim() or any(n > o for n, o in zip(new.shape, orig.shape, strict=True)):
        raise NotASubTensor(f"shape {tuple(new.shape)} is not a sub-shape of {tuple(orig.shape)}")
    changed = [d for d in range(orig.dim()) if new.shape[d] != orig.shape[d]]
    if not changed:
        return {}
    if not orig.is_floating_point():
        raise NotASubTensor("non-float tensor changed shape")
    flat = orig.detach().reshape(-1)
    sorted_vals, order = torch.sort(flat)
    strides = orig.stride() if orig.is_contiguous() else torch.empty(orig.shape).stride()
    keep: dict[int, torch.Tensor] = {}
    for d in changed:
        # one line per kept slice; each slice's position is read from the first of up to 32 columns whose
        # value occurs exactly once in the original (random floats collide now and then)
        lines = new.detach().movedim(d, 0).reshape(new.shape[d], -1)[:, :32].contiguous()
        left = torch.searchsorted(sorted_vals, lines, right=False)
        right = torch.searchsorted(sorted_vals, lines, right=True)
        unique = (right - left) == 1
        first = unique.int().argmax(dim=1)
        pos = left.gather(1, first[:, None]).squeeze(1).clamp(max=flat.numel() - 1)
        keep[d] = (order[pos] // strides[d]) % orig.shape[d]
        known = unique.any(dim=1)
        for a in (~known).nonzero().flatten().tolist():
            later = known[a + 1:].nonzero()
            high = int(keep[d][a + 1 + int(later[0])]) if later.numel() else orig.shape[d]
            keep[d][a] = _ambiguous(order[left[a, 0]:right[a, 0]] // strides[d] % orig.shape[d],
                                    int(keep[d][a - 1]) if a else -1, high, d)
        if keep[d].unique().numel() != keep[d].numel():
            raise NotASubTensor(f"dim {d} maps two kept slices to one original slice")
    sub = orig.detach()
    for d, idx in keep.items():
        sub = sub.index_select(d, idx)
    if not torch.equal(sub, new.detach()):
        raise NotASubTensor("values differ from the original indexed by the recovered kept indices")
    return keep


def _outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(x)


def masked_check(reference: nn.Module, pruned: nn.Module, x: torch.Tensor, tolerance: float = 1e-4) -> dict[str, Any]:
    """Compare ``pruned`` with ``reference`` whose removed indices are zeroed (on a copy)."""
    result: dict[str, Any] = {"check": "neutral masked-original check (bench/checks.py)"}
    try:
        out = _outputs(pruned, x)
    except Exception as exc:
        return {**result, "ok": False, "mode": "structural", "message": f"pruned model does not run: {type(exc).__name__}: {exc}"}
    ref_out = _outputs(reference, x)
    if out.shape != ref_out.shape:
        return {**result, "ok": False, "mode": "structural",
                "message": f"output shape {tuple(out.shape)} differs from the original {tuple(ref_out.shape)}"}
    ref_state, new_state = reference.state_dict(), pruned.state_dict()
    if set(ref_state) != set(new_state):
        diff = sorted(set(ref_state) ^ set(new_state))[:3]
        return {**result, "ok": True, "mode": "structural", "message": f"runs, same output shape; state keys differ ({diff})"}
    masked = copy.deepcopy(reference)
    masked_state = masked.state_dict(keep_vars=True)
    changed: set[str] = set()
    try:
        with torch.no_grad():
            for fqn, t in ref_state.items():
                for d, idx in kept_indices(t, new_state[fqn]).items():
                    removed = torch.ones(t.shape[d], dtype=torch.bool)
                    removed[idx] = False
                    masked_state[fqn].index_fill_(d, removed.nonzero().flatten(), 0)
                    changed.add(fqn)
    except NotASubTensor as exc:
        return {**result, "ok": True, "mode": "structural",
                "message": f"runs, same output shape; {fqn} is not a sub-tensor of the original ({exc})"}
    masked_out = _outputs(masked, x)
    err = (masked_out - out).abs().max().item()
    rel = err / max(masked_out.abs().max().item(), 1e-6)
    owners = {name for name, m in reference.named_modules() if isinstance(m, NORMALIZING)
              and any(f"{name}.{p}" in changed for p, _ in m.named_parameters(recurse=False))}
    result.update(rel_error=rel, tensors_pruned=len(changed))
    if owners:
        example = sorted(owners)[0]
        return {**result, "ok": True, "mode": "structural",
                "message": f"runs, same output shape; masking inexact: {len(owners)} norm/attention modules "
                           f"lost channels (e.g. {example}); masked rel. error {rel:.2g} for information"}
    ok = rel <= tolerance
    return {**result, "ok": ok, "mode": "exact",
            "message": f"masked original vs pruned: max relative error {rel:.2g} ({'<=' if ok else '>'} {tolerance:g})"}
