"""Planning with discovered attribute bindings: which modules hand-written handlers own, which groups no attribute
rewrite can follow (left out of the plan), and the attribute values each plan needs (``Plan.attributes``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from secateurs.graph.analysis import Analysis
from secateurs.graph.groups import Group
from secateurs.graph.probe import unbindable_groups
from secateurs.graph.program import is_program_graph
from secateurs.graph.solve import Solution, Solver
from secateurs.surgery.registry import find_handler, load_for

_RECORDED_PROBLEMS = 20


def prepare(model: torch.nn.Module, analysis: Analysis, candidates: Sequence[Group]) -> dict[int, str]:
    """Tell the bindings which modules a surgery handler refreshes (their sizes are the handler's business) and
    return the candidate groups to leave out: group id -> why their pruning cannot be followed."""
    b = analysis.coupled.bindings
    if b is None:
        return {}
    b.active = not is_program_graph(model)  # a program's literals are rewritten in its graph instead
    if not b.active:
        return {}
    load_for(model)
    b.handled = {path for path, m in model.named_modules() if find_handler(m) is not None}
    return unbindable_groups(analysis.structure, candidates, Solver(b))


def solve_for(analysis: Analysis, new_size: Callable[[int], int]) -> Solution:
    """The attribute rewrites for a plan whose spaces have ``new_size(space)`` elements."""
    b = analysis.coupled.bindings
    if b is None or not b.active:
        return Solution()
    return Solver(b).solve(new_size)


def record(settings: dict[str, Any], solution: Solution) -> dict[str, Any]:
    """``settings`` with the sizes no attribute rewrite produces (read by verification when the model fails)."""
    if not solution.problems:
        return settings
    return {**settings, "unbound_sizes": solution.problems[:_RECORDED_PROBLEMS],
            "unbound_sizes_total": len(solution.problems)}


def left_out_note(left_out: dict[int, str], groups: Sequence[Group]) -> str:
    names = {g.id: g.name for g in groups}
    first = next(iter(left_out))
    return (f"left out {len(left_out)} group(s) whose pruning changes a size forward() cannot follow by rewriting "
            f"attributes, e.g. {names.get(first, first)}: {left_out[first]}")


def describe_unbound(settings: dict[str, Any]) -> str:
    """A sentence naming the sizes of the plan that no attribute rewrite produces, for an error message."""
    problems = settings.get("unbound_sizes") or []
    if not problems:
        return ""
    parts = []
    for p in problems[:3]:
        where = f"node {p['node']!r} ({p['op']}) in module {p['module'] or '(root)'!r}"
        how = f" = {p['expr']}" if p.get("expr") else ""
        candidates = f"; candidate attributes: {', '.join(p['detail'])}" if p.get("detail") else ""
        parts.append(f"{p['arg']} of {where}: {p['before']} -> {p['after']} needed, forward() computes it{how} "
                     f"[{p['kind']}]{candidates}")
    more = settings.get("unbound_sizes_total", len(problems)) - len(parts)
    return " Sizes no attribute rewrite produces: " + "; ".join(parts) + (f"; and {more} more." if more > 0 else ".")
