"""Groups whose pruning no attribute rewrite can follow, found before planning so the plan leaves them alone.

Each group is probed by removing one of its units: the sizes that change are solved for (``graph/solve.py``); a
size forward() writes as a constant, or computes from a tensor that does not shrink with it (``reshape(B, N, C)``
with ``C`` the input width, after the heads were pruned), or from attributes no values of which fit, makes the
group unprunable here. Leaving it out keeps the rest of the model prunable instead of refusing the whole plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from secateurs.graph.groups import Group
from secateurs.graph.provenance import Attr, Dim, leaves
from secateurs.graph.solve import KINDS, Solver
from secateurs.graph.structure import Structure


def _element_classes(st: Structure, solver: Solver) -> dict[int, list[int]]:
    """Class -> the solver's elements whose required size or whose expression's tensor sizes it holds."""
    out: dict[int, list[int]] = {}
    for i, e in enumerate(solver.elements):
        classes = {int(st.space_class[e.space])}
        for leaf in leaves(e.expr) if e.expr is not None else ():
            if isinstance(leaf, Dim) and leaf in solver.b.dim_space:
                classes.add(int(st.space_class[solver.b.dim_space[leaf]]))
        for c in classes:
            out.setdefault(c, []).append(i)
    return out


def unbindable_groups(st: Structure, groups: Sequence[Group], solver: Solver) -> dict[int, str]:
    """Group id -> why removing one of its units changes a size that no attribute rewrite produces. Groups of one
    kind whose sizes come from one shared config field (every layer reads ``config.num_experts``) are probed again
    together, one unit each, as a plan that prunes them alike would be."""
    by_class = _element_classes(st, solver)
    affected = {g.id: {i for c in g.unit_index for i in by_class.get(c, ())} for g in groups}
    out: dict[int, str] = {}
    for g in groups:
        if not affected[g.id]:
            continue
        problems = _problems(st, solver, [g], affected[g.id])
        if problems:
            partners = _sharing(g, groups, affected, solver)
            if len(partners) > 1 and not _problems(st, solver, partners, set().union(*(affected[h.id] for h in partners))):
                continue
            p = problems[0]
            how = f" = {p['expr']}" if p["expr"] else ""
            detail = f" ({'; '.join(p['detail'][:2])})" if p["kind"] == "other use" and p["detail"] else ""
            out[g.id] = (f"size {p['arg']} of {p['op']} at node {p['node']!r} in module {p['module'] or '(root)'!r} "
                         f"is {p['before']}{how}: {KINDS[p['kind']]}{detail}")
    return out


def _problems(st: Structure, solver: Solver, groups: Sequence[Group], affected: set[int]) -> list[dict[str, Any]]:
    """What solving for the sizes of ``groups`` with one unit removed from each leaves unbound."""
    gone = {c: len(idx[0]) for g in groups for c, idx in g.unit_index.items()}

    def new_size(space: int) -> int:
        c = int(st.space_class[space])
        return int(st.class_size[c]) - gone.get(c, 0)

    return [p for p in solver.solve(new_size, affected).problems if p["kind"] != "unknown"]


def _attrs(solver: Solver, elements: set[int]) -> set[Attr]:
    """The config fields (``config.<field>``, shared by every layer that reads them) the elements' sizes come from;
    a module's own attributes are not shared, and groups that meet in one are probed alone as before."""
    return {leaf for i in elements if (e := solver.elements[i]).expr is not None for leaf in leaves(e.expr)
            if isinstance(leaf, Attr) and leaf.name.startswith("config.")}


def _sharing(g: Group, groups: Sequence[Group], affected: dict[int, set[int]], solver: Solver) -> list[Group]:
    """``g`` and the groups of its kind whose sizes come from an attribute ``g``'s sizes come from too."""
    mine = _attrs(solver, affected[g.id])
    return [h for h in groups if h.id == g.id or h.kind == g.kind and mine & _attrs(solver, affected[h.id])]
