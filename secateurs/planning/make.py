"""make_plan(): score every eligible group, select the units to remove, and record a Plan with its config."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import torch

from secateurs.calibration.data import LossFn
from secateurs.config import PruneConfig
from secateurs.graph.analysis import Analysis
from secateurs.graph.groups import Group
from secateurs.planning.attributes import left_out_note
from secateurs.planning.attributes import prepare as prepare_bindings
from secateurs.planning.build import build_plan
from secateurs.planning.defaults import resolve as resolve_defaults
from secateurs.planning.request import read_request
from secateurs.planning.targets import plan_for_latency, plan_for_targets
from secateurs.planning.unmet import warn_unmet
from secateurs.plans import Plan
from secateurs.scoring.registry import ScoringContext, criterion_name, get_criterion
from secateurs.scoring.score import check_weights, score_groups, statistics_for
from secateurs.selection.constraints import constrain, describe
from secateurs.selection.overlap import prefer_finest
from secateurs.selection.overrides import override_for
from secateurs.selection.ranking import Counts, global_counts, local_counts
from secateurs.selection.select import IgnoreSpec, group_is_ignored, ratio_for, ratio_key, select_lowest
from secateurs.targets import DEFAULT_KINDS


def make_plan(model: torch.nn.Module, analysis: Analysis, config: PruneConfig, *, calibration: Any = None,
              loss_fn: LossFn | None = None, example_inputs: Any = None,
              tensors: Mapping[str, torch.Tensor] | None = None) -> Plan:
    """The width plan ``config`` asks for (layers to drop are chosen before, by ``secateurs.depth``). ``tensors``
    gives the weights criteria read when the model holds none (out of core: a mapping that reads each on demand)."""
    config, defaults = resolve_defaults(config, model, calibration)  # "auto" resolved here when a caller did not
    criterion = get_criterion(config.importance)
    req = read_request(model, criterion, config)
    if tensors is None:
        tensors = dict(model.state_dict(keep_vars=True))
        check_weights(criterion, tensors)
    candidates = [g for g in analysis.groups if not group_is_ignored(g, req.ignore, model)]
    fixed_ratio = {g.id: r for g in candidates if (r := override_for(g, req.overrides)) is not None}
    wanted = [g for g in candidates if fixed_ratio.get(g.id, 0.0) > 0 or g.id not in fixed_ratio and (
        g.kind in DEFAULT_KINDS if req.targets else ratio_for(g, req.ratios) > 0)]
    left_out = prepare_bindings(model, analysis, wanted)  # groups no attribute rewrite can follow
    candidates = [g for g in candidates if g.id not in left_out]
    if req.targets:
        free = prefer_finest([g for g in candidates if g.kind in DEFAULT_KINDS and g.id not in fixed_ratio])
    else:
        free = prefer_finest([g for g in candidates if ratio_for(g, req.ratios) > 0 and g.id not in fixed_ratio])
    fixed = [g for g in candidates if fixed_ratio.get(g.id, 0.0) > 0]
    fixed_counts = {g.id: req.limits.rounded(g, math.floor(fixed_ratio[g.id] * g.n_units + 1e-9), capped=False)
                    for g in fixed}
    valid = _Valid(model, candidates, config.valid_heads, _held(model, analysis, req.ignore))
    if not req.targets and req.scope == "local":  # counts known before scoring: say what changes before any work
        valid({**local_counts(free, lambda g: ratio_for(g, req.ratios), req.limits), **fixed_counts})
    stats = statistics_for(criterion, model, calibration, loss_fn, free + fixed) if free or fixed else None
    ctx = ScoringContext(model, tensors, config.seed, stats=stats)
    scores = score_groups(criterion, free + fixed, ctx)
    settings: dict[str, Any] = {  # what planning derived and measured; the request itself is plan.config
        "importance": criterion_name(criterion),
        "ratios": None if req.targets else req.ratios,
        "targets": req.targets or None,
        "normalize": req.normalize if req.scope == "global" else None,
        "calibration": {"batches": stats.n_batches, "gradients": stats.has_grads} if stats is not None else None,
        "loss_fn": getattr(loss_fn, "__name__", type(loss_fn).__name__) if loss_fn is not None else None,
        **({"defaults": defaults} if defaults is not None else {}),
    }

    notes = [left_out_note(left_out, analysis.groups)] if left_out else []

    def finish(counts: Counts) -> Plan:
        counts = valid({**counts, **fixed_counts})
        if not req.targets:
            warn_unmet(req.ratios, [g for g in candidates if g.id not in fixed_ratio], counts,
                       explicit=isinstance(getattr(config.width_target(), "value", None), dict),
                       constrained=frozenset(i for c in valid.changes for i, a, u in
                                             zip(c["groups"], c["kept_asked"], c["kept_used"], strict=True) if a != u))
        removed = {gid: select_lowest(scores[gid], n) for gid, n in counts.items() if n > 0}
        extra = {"count_constraints": valid.changes} if valid.changes else {}
        return build_plan(analysis, removed, {**settings, **extra, "notes": sorted(set(ctx.notes)) + notes}, config)

    if not req.targets:
        if req.scope == "global":
            counts = global_counts(free, scores, req.normalize, req.limits, req.ratios,
                                   key=lambda g: ratio_key(g, req.ratios))
        else:
            counts = local_counts(free, lambda g: ratio_for(g, req.ratios), req.limits)
        return finish(counts)
    if req.latency is not None:
        return plan_for_latency(model, analysis, req, free, scores, fixed_counts, finish, example_inputs)
    return plan_for_targets(model, analysis, req, free, scores, fixed_counts, finish, example_inputs)


def _held(model: torch.nn.Module, analysis: Analysis, ignore: IgnoreSpec) -> tuple[str, ...]:
    """Module prefixes the user keeps as they are: blocks being dropped and the modules of ignored groups."""
    return analysis.dropped + tuple(sorted({m.fqn.rsplit(".", 1)[0] + "." for g in analysis.groups
                                            if group_is_ignored(g, ignore, model) for m in g.members}))


class _Valid:
    """Counts moved onto ones the model's config accepts (``valid_heads``); warns once about what it changed."""

    def __init__(self, model: torch.nn.Module, groups: list[Group], enabled: bool, held: tuple[str, ...] = ()) -> None:
        self.model, self.groups, self.enabled, self.held = model, groups, enabled, held
        self.changes: list[dict[str, Any]] = []
        self._told: set[str] = set()

    def __call__(self, counts: Counts) -> Counts:
        if not self.enabled:
            return counts
        out, changes = constrain(self.model, self.groups, counts, self.held)
        self.changes = changes
        if changes:
            text = describe(changes)
            if text not in self._told:
                self._told.add(text)
                warnings.warn(text, stacklevel=4)
        return out
