"""Analysis: the prunable groups of a model and what could not be pruned, with reasons."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from secateurs.errors import CaptureError
from secateurs.graph.bindings import bind
from secateurs.graph.cache import cached
from secateurs.graph.capture import ExampleInputs, capture
from secateurs.graph.couple import CoupledGraph, Frozen, couple
from secateurs.graph.experts import expert_groups
from secateurs.graph.ffn import tag_ffn_
from secateurs.graph.groups import Group, find_groups
from secateurs.graph.sharded import refuse_sharded
from secateurs.graph.structure import Structure, build_structure
from secateurs.progress import stage

_STRUCTURAL = ("model input", "model output", "size-1", "broadcast", "spatial", "kernel dimension", "embedding vocabulary",
               "created by", "constant tensor", "metadata", "stacking", "reduced dimension",
               "not used by forward", "unused by forward", "non-persistent buffer")


def fingerprint(model: torch.nn.Module) -> str:
    """Hash of parameter/buffer names, shapes and dtypes: identifies an architecture, not weights."""
    h = hashlib.sha256()
    for name, t in model.state_dict(keep_vars=True).items():
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
    return h.hexdigest()[:16]


@dataclass
class Analysis:
    structure: Structure
    groups: list[Group]
    unknown_ops: list[Frozen]
    fingerprint: str
    shapes: dict[str, tuple[int, ...]]
    dropped: tuple[str, ...] = ()  # module prefixes ("layers.2.") of blocks the plan drops (``without_dropped``)

    @property
    def coupled(self) -> CoupledGraph:
        return self.structure.coupled

    def blocked_params(self) -> dict[str, list[str]]:
        """Parameters with a dimension frozen for a non-structural reason (unknown op, unmapped dim)."""
        st = self.structure
        out: dict[str, list[str]] = {}
        for c, reasons in st.class_frozen.items():
            notable = [r for r in reasons if not any(k in r for k in _STRUCTURAL)]
            if not notable:
                continue
            for fqn, dim in st.class_params.get(c, []):
                out.setdefault(f"{fqn}[dim {dim}]", []).extend(notable[:3])
        return out

    def summary(self) -> str:
        lines = [f"{len(self.groups)} prunable groups"]
        for g in self.groups:
            flag = "" if g.exact else "  (structural-only: " + g.inexact_reasons[0].split(" at ")[0] + ")"
            lines.append(f"  [{g.id:3d}] {g.kind:<11} {g.n_units:5d} units x {g.unit_size:<4d} {g.name}"
                         f"  (+{len(g.members) - 1} coupled){flag}")
        if self.unknown_ops:
            lines.append(f"{len(self.unknown_ops)} ops froze dimensions (no rule or rule failed):")
            for u in self.unknown_ops[:30]:
                lines.append(f"  - {u.reason} at {u.where}")
            lines.append("  Way out: register a rule with secateurs.graph.rules.register, or ignore the module.")
        blocked = self.blocked_params()
        if blocked:
            lines.append(f"{len(blocked)} parameter dims blocked by those ops, e.g.:")
            for name, reasons in list(blocked.items())[:15]:
                lines.append(f"  - {name}: {reasons[0]}")
        return "\n".join(lines)


def analyze(model: torch.nn.Module, example_inputs: ExampleInputs) -> Analysis:
    refuse_sharded(model, "analyze")
    from secateurs.plugins import load_integrations

    if isinstance(model, torch.nn.Module):  # capture() raises the type error otherwise
        load_integrations(model)  # integrations the model uses (Hugging Face) declare rule opt-ins when imported
    if not isinstance(model, torch.nn.Module):
        return _analyze(model, example_inputs)
    return cached(model, example_inputs, lambda: _analyze(model, example_inputs))


def _analyze(model: torch.nn.Module, example_inputs: ExampleInputs) -> Analysis:
    with stage("capture (torch.export)"):
        captured = capture(model, example_inputs)
    coupled = _couple_static(captured, model)
    _freeze_non_persistent(coupled, model)
    structure = build_structure(coupled)
    tag_ffn_(structure)
    groups = find_groups(structure)
    experts, counts = expert_groups(structure, len(groups))
    groups += experts
    if counts:  # expert counts written next to expert ids: bound like every other literal size
        coupled.literals = [*coupled.literals, *counts]
        coupled.bindings = bind(coupled.captured, coupled.spaces, coupled.literals)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict(keep_vars=True).items()}
    return Analysis(structure, groups, couple_unknown(structure), fingerprint(model), shapes)


def _couple_static(captured: Any, model: torch.nn.Module) -> CoupledGraph:
    """``couple`` on a graph whose tensor sizes are all known; a size that depends on the data (the tokens an
    expert gets when forward() gathers them with ``nonzero``) is refused with the way out."""
    from torch.fx.experimental.symbolic_shapes import GuardOnDataDependentSymNode

    try:
        return couple(captured)
    except GuardOnDataDependentSymNode as exc:
        raise CaptureError(
            f"{type(model).__name__}: the captured graph has tensor sizes that depend on the input values "
            f"({str(exc).splitlines()[0][:160]}), and secateurs couples dimensions by their static sizes. Capture "
            "a form of forward() with static shapes (for mixture-of-experts layers, an implementation that runs "
            "every expert on all tokens, e.g. transformers' experts_implementation='batched_mm' or 'grouped_mm' "
            "where the class offers it), or prune with a plan made on such a form") from exc


def _freeze_non_persistent(coupled: CoupledGraph, model: torch.nn.Module) -> None:
    """Buffers outside the state dict (HF RoPE ``inv_freq``) are rebuilt by ``__init__``: never slice them."""
    persistent = model.state_dict(keep_vars=True)
    captured = coupled.captured
    for ph, fqn in captured.state_inputs.items():
        if captured.state_kinds[ph] == "buffer" and fqn not in persistent:
            for s in (coupled.spaces.get(ph) or [[]])[0]:
                coupled.rel.frozen.setdefault(s, []).append(f"non-persistent buffer '{fqn}' (rebuilt on load)")


def couple_unknown(structure: Structure) -> list[Frozen]:
    return structure.coupled.unknown_ops


def unit_member_norms(group: Group, tensors: Mapping[str, torch.Tensor], p: float) -> np.ndarray:
    """Per-unit sum over parameter members of |w|^p along the member dims (used by magnitude criteria)."""
    per_member = unit_norms_by_member(group, tensors, p)
    return np.sum(per_member, axis=0) if per_member else np.zeros(group.n_units)


#: elements of a weight turned into float at once by the magnitude norms (64 MB): a larger weight is read in
#: slices along its first dim, so scoring an 8B model's MLP never holds a float copy of a whole matrix
NORM_CHUNK = 1 << 24


def unit_norms_by_member(group: Group, tensors: Mapping[str, torch.Tensor], p: float) -> list[np.ndarray]:
    """For each parameter member with values: per-unit sum of |w|^p along its dim."""
    out = []
    for m in group.members:
        t = tensors.get(m.fqn)
        if t is None or t.is_meta:
            continue
        per_index = _index_norms(t.detach(), m.dim, p)
        out.append(per_index[group.unit_index[m.cls]].sum(axis=1))
    return out


def _index_norms(t: torch.Tensor, dim: int, p: float) -> np.ndarray:
    """Sum of |t|^p over every dim but ``dim``, one float slice of at most ``NORM_CHUNK`` elements at a time."""
    rows = max(1, NORM_CHUNK // max(1, t.numel() // max(1, t.shape[0]))) if t.ndim else 1
    if t.ndim == 0 or rows >= t.shape[0]:
        return _norm_part(t, dim, p).cpu().numpy()
    parts = [_norm_part(t[i:i + rows], dim, p) for i in range(0, t.shape[0], rows)]
    return (torch.cat(parts) if dim == 0 else torch.stack(parts).sum(0)).cpu().numpy()


def _norm_part(t: torch.Tensor, dim: int, p: float) -> torch.Tensor:
    x = t.float()
    if x.data_ptr() == t.data_ptr():  # already float32: work on a copy, never on the weights
        x = x.clone()
    x = x.square_() if p == 2.0 else x.abs_() if p == 1.0 else x.abs_().pow_(p)  # in place: one float copy at most
    other = [d for d in range(x.ndim) if d != dim]
    return x.sum(dim=other) if other else x
