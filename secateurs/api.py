"""The public verbs: analyze, plan, apply, verify, prune, count."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
from torch import nn

from secateurs.calibration.data import LossFn
from secateurs.config import PruneConfig
from secateurs.depth.planning import attach, choose_drop, width_calibration, without_dropped
from secateurs.errors import ApplyError, InvalidTypeError, VerificationError
from secateurs.graph.analysis import Analysis
from secateurs.graph.analysis import analyze as _analyze
from secateurs.graph.capture import ExampleInputs, capture
from secateurs.graph.counting import graph_macs, param_count, state_bytes
from secateurs.graph.program_limits import refuse_for_program
from secateurs.planning.build import build_plan
from secateurs.planning.checks import run_plan_checks
from secateurs.planning.defaults import fit_memory
from secateurs.planning.defaults import resolve as resolve_defaults
from secateurs.planning.make import make_plan
from secateurs.planning.narrow import narrowed
from secateurs.plans import Plan
from secateurs.reporting.prune_report import PruneReport
from secateurs.rotation.planning import record_rotation, rotate_for_plan
from secateurs.rotation.rotate import check_rotated, finish_slice_
from secateurs.scoring.registry import get_criterion
from secateurs.surgery.apply import apply_plan, snapshot_modules
from secateurs.verification import precision
from secateurs.verification.oracle import (
    VerifyResult,
    combine,
    compare,
    has_weights,
    recheck_in_float64,
    reference_outputs,
    run,
    verify_exact_subset,
)


def analyze(model: nn.Module, example_inputs: ExampleInputs) -> Analysis:
    """Capture the model and find its prunable groups; ``.summary()`` is readable text."""
    return _analyze(model, example_inputs)


def plan(model: nn.Module, example_inputs: ExampleInputs, config: PruneConfig | None = None, *,
         calibration: Any = None, loss_fn: LossFn | None = None, analysis: Analysis | None = None,
         **options: Any) -> Plan:
    """Decide what to remove; the model is not changed. ``config`` holds every option (``sc.PruneConfig``);
    keyword options build one or change the one given (``ratio=0.3``, ``importance="wanda"``, ``macs=0.5``, ...,
    see ``PruneConfig``). The plan carries its config: ``sc.plan(model, x, plan.config)`` makes it again.

    ``ratio`` is the fraction of units removed (per group with ``scope="local"``, of all units of a kind
    with ``scope="global"``; default 0.5). ``macs=`` / ``params=`` instead ask for the fraction KEPT,
    met within ±5% and checked with ``count``. ``importance`` names a criterion
    (``secateurs.scoring.CRITERIA.names()``); data criteria read ``calibration`` batches shaped like
    ``example_inputs`` and, for gradients, ``loss_fn(output, batch)``. ``latency=0.5`` (or a ``LatencyTarget``)
    asks for the fraction of MEASURED latency kept on the current device, met within ±10% by bisection on
    timed pruned copies; ``plan.settings["achieved"]`` and ``["latency"]`` record the result.

    ``drop_layers=N`` also removes N whole residual blocks (decoder layers) chosen by ``layer_importance``
    (``"block_influence"``, default, or ``"angular"``) on the ``calibration`` batches; with no ratio only layers
    are dropped. See ``secateurs.depth``. ``merge_layers=N`` removes N blocks by merging runs of them (LaCo).

    ``importance`` and ``compensate`` default to ``"auto"``: with ``calibration`` the measured choice for the model
    kind, else ``l2`` (``secateurs.planning.defaults``); ``plan.config`` records what they resolved to.
    ``rotate=True`` (SliceGPT) rotates the residual stream of ``model`` IN PLACE first (the function is unchanged,
    checked), so the plan fits the rotated model; see docs/llm-methods.md.
    """
    config = PruneConfig.build(config, **options)
    config, defaults = resolve_defaults(config, model, calibration)
    refuse_for_program(model, drop_layers=config.removes_layers(), rotate=config.rotate)
    drop = choose_drop(model, config.drop_layers, config.layer_importance, calibration, config.merge_layers)
    analysis = analysis or _analyze(model, example_inputs)
    width_config, rotation, analysis = rotate_for_plan(model, analysis, example_inputs, config, calibration)
    try:
        p, found = _width_plan(model, without_dropped(analysis, drop), width_config, config,
                               width_calibration(config, calibration), loss_fn, example_inputs)
        p = _recorded(attach(record_rotation(p, rotation, config), drop), defaults)
        run_plan_checks(model, p, found)  # e.g. a Hugging Face config that cannot describe the result
    except Exception:
        if rotation is not None:
            rotation.undo()
        raise
    return p


def _width_plan(model: nn.Module, analysis: Analysis, config: PruneConfig, request: PruneConfig, calibration: Any,
                loss_fn: LossFn | None, example_inputs: ExampleInputs) -> tuple[Plan, list[Warning] | None]:
    """The width plan of ``config``, narrowed to kinds the model's stock config can describe (``planning/narrow``)
    when the width plan is the whole ``request``; with the plan check's findings when they were computed."""

    def make(cfg: PruneConfig) -> Plan:
        return make_plan(model, analysis, cfg, calibration=calibration, loss_fn=loss_fn, example_inputs=example_inputs)

    alone = not (request.removes_layers() or request.rotate)
    return narrowed(model, config, make, make(config), alone)


def _recorded(p: Plan, defaults: dict[str, Any] | None) -> Plan:
    if defaults is not None:
        p.settings["defaults"] = defaults
    return p


def apply(model: nn.Module, plan: Plan) -> nn.Module:
    """Apply ``plan`` in place. Transactional: on any error the model is left as it was. A plan made with
    ``rotate=True`` fits the model ``sc.plan`` rotated (its norms are rescaled after the slice)."""
    if not isinstance(model, nn.Module):
        raise InvalidTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(plan, Plan):
        raise InvalidTypeError(f"plan must be a secateurs.Plan (from sc.plan or sc.Plan.from_json), got "
                               f"{type(plan).__name__}")
    check_rotated(model, plan)
    apply_plan(model, plan)
    finish_slice_(model, plan)
    return model


def verify(reference: nn.Module | Mapping[str, Any], pruned: nn.Module, plan: Plan, example_inputs: ExampleInputs,
           *, tolerance: float | None = None, reexport: bool = True) -> VerifyResult:
    """Compare ``pruned`` with the unpruned ``reference`` whose removed units are zeroed in place (and restored).

    ``reference`` is the unpruned module or its state dict taken before pruning (cloned), e.g.
    ``before = {k: v.clone() for k, v in model.state_dict().items()}``; ``sc.verify(before, model, plan, x)``.
    """
    from secateurs.verification.oracle import verify as _verify

    return _verify(reference, pruned, plan, example_inputs, tolerance=tolerance, reexport=reexport)


def prune(model: nn.Module, example_inputs: ExampleInputs, config: PruneConfig | None = None, *,
          calibration: Any = None, loss_fn: LossFn | None = None, **options: Any) -> PruneReport:
    """Plan, apply and verify in one call (options as in ``plan``: a ``PruneConfig`` and/or keywords). On a
    failed verification the model is restored and an error raised.

    ``check``: ``True`` (default) verifies; when the plan also prunes dims that are normalised over
    (structural-only groups), the exactly-checkable groups are additionally applied to a copy of the
    model and compared numerically, if the model's parameters take at most 2 GB (``"full"``: always;
    ``False``: no verification). Dropped layers (``drop_layers=``) are checked against the original with
    those blocks run as identity.

    ``compensate="bias"|"lstsq"`` (or ``secateurs.compensation.Compensation(method, ridge=, add_bias=)``)
    refits the layers that read pruned channels from ``calibration`` batches after verification (see
    ``docs/compensation.md``); ``report.compensation`` has the output error on ``example_inputs``
    relative to the unpruned model, before and after.
    """
    config = PruneConfig.build(config, **options)
    config, defaults = resolve_defaults(config, model, calibration)
    drop, width_cal = _width_and_depth(model, config, calibration)
    analysis = _analyze(model, example_inputs)
    width_config, rotation, analysis = rotate_for_plan(model, analysis, example_inputs, config, calibration)
    try:
        p, found = _width_plan(model, without_dropped(analysis, drop), width_config, config, width_cal, loss_fn,
                               example_inputs)
        p = _recorded(attach(record_rotation(p, rotation, config), drop), defaults)
        run_plan_checks(model, p, found)  # before any surgery: a Hugging Face config that cannot describe the result
        p.config = config = _auto_compensation(model, p, config, defaults)
        pending = None
        if config.compensate is not None:
            from secateurs.compensation.pipeline import prepare

            pending = prepare(model, p, example_inputs, config.compensate, calibration)  # the unpruned model's statistics
        return _apply_verified(model, analysis, p, example_inputs, config.check, config.tolerance, pending)
    except Exception:
        if rotation is not None:
            rotation.undo()
        raise


def _auto_compensation(model: nn.Module, p: Plan, config: PruneConfig, defaults: dict[str, Any] | None) -> PruneConfig:
    """An automatic compensation only where width was pruned, and ``bias`` where least squares would not fit in memory."""
    if defaults is None or defaults.get("compensate") is None:
        return config
    if not p.removed_units():
        defaults["compensate"] = None
        return dataclasses.replace(config, compensate=None)
    from secateurs.compensation.gather import gram_bytes

    return fit_memory(config, defaults, gram_bytes(model, p))


def _width_and_depth(model: nn.Module, config: PruneConfig, calibration: Any) -> tuple[Any, Any]:
    """(layers to drop, calibration for the width criterion), checking the compensation request before any batch
    is read."""
    refuse_for_program(model, drop_layers=config.removes_layers(), compensate=config.compensate, rotate=config.rotate)
    width_cal = width_calibration(config, calibration)
    if config.compensate is not None:
        from secateurs.compensation.gather import check_request

        needs_data = bool(getattr(get_criterion(config.importance), "needs_data", False))
        check_request(config.compensate, calibration,
                      read_twice=needs_data or config.removes_layers() or config.rotate)
        if not needs_data:
            width_cal = None  # read by the compensation only: no "unused calibration" warning when planning
    return choose_drop(model, config.drop_layers, config.layer_importance, calibration, config.merge_layers), width_cal


def _apply_verified(model: nn.Module, analysis: Analysis, p: Plan, example_inputs: ExampleInputs, check: bool | str,
                    tolerance: float | None, pending: Any) -> PruneReport:
    """Apply ``p`` and verify it against the masked original, then compensate; on any failure restore the model."""
    macs_before, params_before, bytes_before = graph_macs(analysis.coupled.captured), param_count(model), state_bytes(model)
    can_run = has_weights(model)
    subset_result = _exact_subset(model, analysis, p, example_inputs, check, tolerance) if check and can_run else None
    reference = reference_outputs(model, p, example_inputs) if check else None  # on meta: shapes and dtypes only
    undo = snapshot_modules(list(model.modules()))  # its journal keeps the replaced tensors (spilled when large)
    apply_plan(model, p, journal=undo.journal)
    result = None
    notes: list[str] = []
    after: list[Any] = []  # the re-export check's capture of the pruned model, reused to count its MACs
    if reference is not None:
        result = compare(reference, model, p, example_inputs, tolerance=tolerance,
                         exporter=lambda m, x: after.append(capture(m, x)))
        if not result.ok and tolerance is None and precision.applicable(model, result):
            result, undo = _settle_rounding(model, p, example_inputs, result, undo)
        if subset_result is not None:
            result = combine(result, subset_result, sum(1 for g in p.groups if g.removed and not g.exact))
        if not result.ok:
            undo.restore()
            raise VerificationError(f"{result.message}; the model was restored unchanged")
        notes.extend(result.notes)
        if not can_run:
            notes.append("model has no weights (meta device): outputs not compared, shapes and dtypes checked on meta")
    try:
        macs_after = graph_macs(after[0] if after else capture(model, example_inputs))  # meta too: capture needs no weights
    except Exception as exc:  # the verification above already re-exported; keep the error explicit
        undo.restore()
        raise ApplyError(f"pruned model cannot be captured again: {exc}; the model was restored") from exc
    if not p.exact and p.removed_units() and subset_result is None:
        notes.append("some pruned groups normalise over the pruned dimension: verified structurally, not numerically")
    compensation = None
    finish_slice_(model, p)  # a rotated model's norms, after its hidden size was sliced
    if pending is not None:
        try:
            compensation = pending.finish(model, p)  # after verification, which checks the plain surgery
        except Exception:
            undo.restore()
            raise
    undo.journal.drop()  # final: the replaced tensors (or their spill file) are let go
    return PruneReport(model, p, result, macs_before, macs_after, params_before, param_count(model), notes,
                       compensation, bytes_before, state_bytes(model))


def _settle_rounding(model: nn.Module, p: Plan, example_inputs: ExampleInputs, result: VerifyResult,
                     undo: Any) -> tuple[VerifyResult, Any]:
    """A float32 comparison that failed on values only, decided again in float64 (``verification/precision.py``):
    the model is restored to compare copies of the original and the pruned model, and pruned again when the
    float64 comparison passes."""
    pruned = copy.deepcopy(model)
    undo.restore()
    in_float64 = recheck_in_float64(model, pruned, p, example_inputs)
    del pruned
    redo = snapshot_modules(list(model.modules()))
    apply_plan(model, p, journal=redo.journal)
    if in_float64 is None or not in_float64.ok:
        return result, redo
    return precision.settled(result, in_float64), redo


def _exact_subset(model: nn.Module, analysis: Analysis, p: Plan, example_inputs: ExampleInputs,
                  check: bool | str, tolerance: float | None) -> VerifyResult | None:
    """Numerically check the exact groups of a plan that also has structural-only groups (on a copy)."""
    exact = {g.id: np.asarray(g.removed, dtype=np.int64) for g in p.groups if g.removed and g.exact}
    if p.exact or not exact:
        return None
    size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    if check != "full" and size > 2 * 1024**3:
        return None
    subset = build_plan(analysis, exact, dict(p.settings), p.config)
    return verify_exact_subset(model, subset, example_inputs, tolerance=tolerance)


def count(model: nn.Module, example_inputs: ExampleInputs) -> tuple[int, int]:
    """(MACs of one forward pass on ``example_inputs``, number of parameters)."""
    from secateurs.graph.counting import count as _count

    return _count(model, example_inputs)


__all__ = ["analyze", "apply", "count", "plan", "prune", "run", "verify"]
