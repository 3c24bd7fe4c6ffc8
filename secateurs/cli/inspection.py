"""``secateurs inspect MODEL``: prunable groups, ops that froze dimensions (with reasons), MACs and params."""

from __future__ import annotations

import argparse
from typing import Any

from secateurs.cli._common import (
    add_model_flags,
    add_output_flags,
    emit_json,
    load_model,
    say,
    set_threads,
    step,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="show prunable groups, frozen ops with reasons, MACs and params")
    add_model_flags(p)
    add_output_flags(p)
    p.set_defaults(run=run)


def describe(analysis: Any, macs: int, params: int) -> dict[str, Any]:
    return {
        "macs": macs, "params": params, "fingerprint": analysis.fingerprint,
        "groups": [{"id": g.id, "kind": g.kind, "name": g.name, "units": g.n_units, "unit_size": g.unit_size,
                    "coupled_tensors": len(g.members), "exact": g.exact,
                    "inexact_reason": g.inexact_reasons[0] if g.inexact_reasons else ""} for g in analysis.groups],
        "frozen_ops": [{"op": u.op, "where": u.where, "reason": u.reason} for u in analysis.unknown_ops],
        "blocked": analysis.blocked_params(),
    }


def run(args: argparse.Namespace) -> int:
    import secateurs as sc
    from secateurs.graph.counting import graph_macs, param_count
    from secateurs.reporting.render import fmt

    set_threads(args)
    source, model, spec = load_model(args)
    step(args, "capturing and analysing the graph")
    analysis = sc.analyze(model, spec.make())
    macs, params = graph_macs(analysis.coupled.captured), param_count(model)
    info = {"model": source.spec, "class": type(model).__name__, "input": spec.to_dict(), **describe(analysis, macs, params)}
    emit_json(args, info)
    say(args, f"model: {source.spec} ({type(model).__name__}), input {spec.describe()}")
    say(args, f"params {fmt(params)}, MACs {fmt(macs)} per forward pass")
    say(args, analysis.summary())
    return 0
