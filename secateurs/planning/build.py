"""From removed units to a Plan: kept indices of every parameter and buffer, op hints and graph literals."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from secateurs._version import __version__
from secateurs.config import PruneConfig
from secateurs.errors import PlanError
from secateurs.graph.analysis import Analysis
from secateurs.graph.structure import Structure
from secateurs.planning.attributes import record, solve_for
from secateurs.plans import GroupRecord, Plan


def build_plan(analysis: Analysis, removed: dict[int, np.ndarray], settings: dict[str, Any],
               config: PruneConfig | None = None) -> Plan:
    """Turn per-group removed units into kept indices for every parameter and buffer they touch."""
    st = analysis.structure
    removed_by_class: dict[int, set[int]] = {}
    for g in analysis.groups:
        units = removed.get(g.id)
        if units is None or len(units) == 0:
            continue
        for c, idx in g.unit_index.items():
            removed_by_class.setdefault(c, set()).update(idx[units].ravel().tolist())
    keep: dict[str, dict[int, list[int]]] = {}
    for c, gone in removed_by_class.items():
        size = int(st.class_size[c])
        if len(gone) >= size:
            raise PlanError(f"plan would remove every unit of a dimension of size {size}; lower the ratio")
        kept = sorted(set(range(size)) - gone)
        for fqn, dim in st.class_params.get(c, []):
            keep.setdefault(fqn, {})[dim] = kept
    hints: dict[str, dict[str, Any]] = {}
    hints_before: dict[str, dict[str, Any]] = {}
    for path, name, spaces in st.coupled.rel.hints:
        classes = [int(st.space_class[s]) for s in spaces]
        new = [int(st.class_size[c]) - len(removed_by_class.get(c, ())) for c in classes]
        old = [int(st.class_size[c]) for c in classes]
        if new != old:
            hints.setdefault(path, {})[name] = new[0] if len(new) == 1 else new
            hints_before.setdefault(path, {})[name] = old[0] if len(old) == 1 else old
    literals = literal_values(st, removed_by_class)
    solution = solve_for(analysis, _sizes_after(st, removed_by_class))
    records = [
        GroupRecord(g.id, g.kind, g.name, [(m.fqn, m.dim) for m in g.members], g.n_units, g.unit_size,
                    [int(u) for u in removed.get(g.id, np.zeros(0, dtype=np.int64))], g.exact,
                    g.inexact_reasons[0] if g.inexact_reasons else "")
        for g in analysis.groups
    ]
    shapes = {k: list(v) for k, v in analysis.shapes.items()}
    experts = [{"group": g.id, **g.meta} for g in analysis.groups if g.kind == "experts" and len(removed.get(g.id, ()))]
    if experts:  # what verification needs to mask removed experts at the router (a record derived from the graph)
        settings = {**settings, "experts": experts}
    return Plan(analysis.fingerprint, shapes, keep, hints, records, record(settings, solution), __version__,
                hints_before=hints_before, literals=literals, config=config, attributes=solution.attributes,
                attributes_before=solution.before)


def _sizes_after(st: Structure, removed_by_class: dict[int, set[int]]) -> Callable[[int], int]:
    def new_size(s: int) -> int:
        c = int(st.space_class[s])
        return int(st.class_size[c]) - len(removed_by_class.get(c, ()))

    return new_size


def literal_values(st: Structure, removed_by_class: dict[int, set[int]]) -> dict[str, dict[str, Any]]:
    """Node name -> {"op": target, "set": {argument key: value after pruning}, "before": {key: value as written}}
    (plus "target" when the op must change, split -> split_with_sizes) for the literal sizes that change."""
    by_name = st.coupled.captured.by_name
    new_size = _sizes_after(st, removed_by_class)

    def old_size(s: int) -> int:
        return int(st.coupled.rel.sizes[s])

    out: dict[str, dict[str, Any]] = {}
    for lit in st.coupled.literals:
        node = by_name[lit.node]
        kind, _, where = lit.key.partition(".")
        written = node.args[int(where)] if kind == "args" else node.kwargs[where]
        plain = written if isinstance(written, (list, tuple)) else [written]
        if not all(isinstance(v, int) for v in plain):
            continue  # a size computed in the graph (not a literal): nothing to rewrite, and no JSON for it
        new = lit.value(new_size, written)
        if new == lit.value(old_size, written):
            continue
        entry = out.setdefault(lit.node, {"op": lit.op, "set": {}, "before": {}})
        entry["set"][lit.key] = new
        entry["before"][lit.key] = written
        if lit.retarget:
            entry["target"] = lit.retarget
    return out
