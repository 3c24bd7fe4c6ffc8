"""The public verbs: analyze, plan, apply, verify, prune, count."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import nn

from secateurs.calibration.collect import LossFn
from secateurs.errors import ApplyError, InvalidArgumentError, VerificationError
from secateurs.graph.analysis import Analysis
from secateurs.graph.analysis import analyze as _analyze
from secateurs.graph.capture import ExampleInputs, capture
from secateurs.graph.counting import graph_macs, param_count, state_bytes
from secateurs.planning.make import build_plan, make_plan
from secateurs.plans import Plan
from secateurs.reporting.prune_report import PruneReport
from secateurs.scoring.registry import Criterion
from secateurs.selection.latency import LatencyTarget
from secateurs.surgery.apply import _snapshot, apply_plan
from secateurs.verification.oracle import (
    VerifyResult,
    combine,
    compare,
    has_weights,
    reference_outputs,
    run,
    verify_exact_subset,
)

if TYPE_CHECKING:
    from secateurs.compensation.config import Compensation


def analyze(model: nn.Module, example_inputs: ExampleInputs) -> Analysis:
    """Capture the model and find its prunable groups; ``.summary()`` is readable text."""
    return _analyze(model, example_inputs)


def plan(
    model: nn.Module,
    example_inputs: ExampleInputs,
    *,
    ratio: float | Mapping[str, float] | None = None,
    importance: str | Criterion = "l2",
    ignore: Iterable[str | type] | str | type | None = None,
    round_to: int = 1,
    min_keep: int = 1,
    seed: int = 0,
    analysis: Analysis | None = None,
    scope: str = "local",
    normalize: str | None = None,
    macs: float | None = None,
    params: float | None = None,
    overrides: Mapping[str, float] | None = None,
    max_ratio: float | None = None,
    calibration: Any = None,
    loss_fn: LossFn | None = None,
    latency: float | LatencyTarget | None = None,
    drop_layers: int | None = None,
    layer_importance: str | None = None,
    uniform: bool | None = None,
) -> Plan:
    """Decide what to remove; the model is not changed.

    ``ratio`` is the fraction of units removed (per group with ``scope="local"``, of all units of a kind
    with ``scope="global"``; default 0.5). ``macs=`` / ``params=`` instead ask for the fraction KEPT,
    met within ±5% and checked with ``count``. ``importance`` names a criterion (``registered_criteria()``);
    data criteria read ``calibration`` batches shaped like ``example_inputs`` and, for gradients,
    ``loss_fn(output, batch)``. ``overrides={"pattern": ratio}`` fixes the ratio of matching modules,
    ``max_ratio`` caps the fraction of any group removed, ``normalize`` picks the per-group score
    normalisation of global ranking (mean by default). ``latency=0.5`` (or a ``LatencyTarget`` with timing
    settings) asks for the fraction of MEASURED latency kept on the current device, met within ±10% by
    bisection on timed pruned copies; ``plan.settings["achieved"]`` and ``["latency"]`` record the result.

    ``drop_layers=N`` also removes N whole residual blocks (decoder layers) chosen by ``layer_importance``
    (``"block_influence"``, default, or ``"angular"``) on the ``calibration`` batches; with no ``ratio``
    only layers are dropped. See ``secateurs.depth``. ``uniform=True`` keeps every layer the same width (local
    ranking, the default, so a Hugging Face config can describe the result); ``uniform=False`` lets widths differ
    per layer (global ranking; save with ``sc.save``/``sc.load``).
    """
    from secateurs.depth.planning import attach, choose_drop, width_request, without_dropped
    from secateurs.graph.program_limits import refuse_for_program

    _no_latency_with_drop(latency, drop_layers)
    refuse_for_program(model, drop_layers=drop_layers)
    scope = _scope(scope, uniform)
    width_ratio, width_calibration = width_request(drop_layers, ratio, importance, calibration, macs, params)
    drop = choose_drop(model, drop_layers, layer_importance, calibration)
    analysis = analysis or _analyze(model, example_inputs)
    p = make_plan(model, without_dropped(analysis, drop), ratio=width_ratio, importance=importance, ignore=ignore,
                  round_to=round_to, min_keep=min_keep, seed=seed, scope=scope, normalize=normalize, macs=macs,
                  params=params, overrides=overrides, max_ratio=max_ratio, calibration=width_calibration,
                  loss_fn=loss_fn, example_inputs=example_inputs, latency=latency)
    return attach(p, drop)


def _scope(scope: str, uniform: bool | None) -> str:
    """``uniform=True``: every layer keeps the same width (local ranking, the default); ``False``: widths may differ
    per layer (global ranking)."""
    if uniform is None:
        return scope
    if not isinstance(uniform, bool):
        raise InvalidArgumentError(f"uniform must be True, False or None, got {uniform!r}")
    if uniform and scope == "global":
        raise InvalidArgumentError("uniform=True keeps every layer the same width, which global ranking does not; "
                                   "drop scope='global' or pass uniform=False")
    return "local" if uniform else "global"


def _no_latency_with_drop(latency: Any, drop_layers: int | None) -> None:
    if latency is not None and drop_layers:
        raise InvalidArgumentError("drop_layers= cannot be combined with a latency= target yet (the latency search "
                                   "does not time dropped blocks); pass ratio= for the width part")


def apply(model: nn.Module, plan: Plan) -> nn.Module:
    """Apply ``plan`` in place. Transactional: on any error the model is left as it was."""
    return apply_plan(model, plan)


def verify(reference: nn.Module | Mapping[str, Any], pruned: nn.Module, plan: Plan, example_inputs: ExampleInputs,
           *, tolerance: float | None = None, reexport: bool = True) -> VerifyResult:
    """Compare ``pruned`` with the unpruned ``reference`` whose removed units are zeroed in place (and restored).

    ``reference`` is the unpruned module or its state dict taken before pruning (cloned), e.g.
    ``before = {k: v.clone() for k, v in model.state_dict().items()}``; ``sc.verify(before, model, plan, x)``.
    """
    from secateurs.verification.oracle import verify as _verify

    return _verify(reference, pruned, plan, example_inputs, tolerance=tolerance, reexport=reexport)


def prune(
    model: nn.Module,
    example_inputs: ExampleInputs,
    *,
    ratio: float | Mapping[str, float] | None = None,
    importance: str | Criterion = "l2",
    ignore: Iterable[str | type] | str | type | None = None,
    round_to: int = 1,
    min_keep: int = 1,
    seed: int = 0,
    check: bool | str = True,
    tolerance: float | None = None,
    scope: str = "local",
    normalize: str | None = None,
    macs: float | None = None,
    params: float | None = None,
    overrides: Mapping[str, float] | None = None,
    max_ratio: float | None = None,
    calibration: Any = None,
    loss_fn: LossFn | None = None,
    compensate: str | Compensation | None = None,
    latency: float | LatencyTarget | None = None,
    drop_layers: int | None = None,
    layer_importance: str | None = None,
    uniform: bool | None = None,
) -> PruneReport:
    """Plan, apply and verify in one call (arguments as in ``plan``). On a failed verification the model is
    restored and an error raised.

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
    if check not in (True, False, "full"):
        raise InvalidArgumentError(f"check must be True, False or 'full', got {check!r}")
    from secateurs.depth.planning import attach, without_dropped

    _no_latency_with_drop(latency, drop_layers)
    scope = _scope(scope, uniform)
    width_ratio, width_calibration, drop = _width_and_depth(model, ratio, importance, calibration, macs, params,
                                                            drop_layers, layer_importance, compensate)
    analysis = _analyze(model, example_inputs)
    p = make_plan(model, without_dropped(analysis, drop), ratio=width_ratio, importance=importance, ignore=ignore,
                  round_to=round_to, min_keep=min_keep, seed=seed, scope=scope, normalize=normalize, macs=macs,
                  params=params, overrides=overrides, max_ratio=max_ratio, calibration=width_calibration,
                  loss_fn=loss_fn, example_inputs=example_inputs, latency=latency)
    p = attach(p, drop)
    pending = None
    if compensate is not None:
        from secateurs.compensation.pipeline import prepare

        pending = prepare(model, p, example_inputs, compensate, calibration)  # statistics of the unpruned model
    return _apply_verified(model, analysis, p, example_inputs, check, tolerance, pending)


def _width_and_depth(model: nn.Module, ratio: Any, importance: str | Criterion, calibration: Any, macs: float | None,
                     params: float | None, drop_layers: int | None, layer_importance: str | None,
                     compensate: Any) -> tuple[Any, Any, Any]:
    """(width ratio, calibration for the width criterion, layers to drop), checking the compensation request
    before any batch is read."""
    from secateurs.depth.planning import choose_drop, width_request
    from secateurs.graph.program_limits import refuse_for_program

    refuse_for_program(model, drop_layers=drop_layers, compensate=compensate)
    width_ratio, width_calibration = width_request(drop_layers, ratio, importance, calibration, macs, params)
    if compensate is not None:
        from secateurs.compensation.gather import check_request
        from secateurs.scoring.registry import get_criterion

        needs_data = bool(getattr(get_criterion(importance), "needs_data", False))
        check_request(compensate, calibration, read_twice=needs_data or bool(drop_layers))
        if not needs_data:
            width_calibration = None  # read by the compensation only: no "unused calibration" warning when planning
    return width_ratio, width_calibration, choose_drop(model, drop_layers, layer_importance, calibration)


def _apply_verified(model: nn.Module, analysis: Analysis, p: Plan, example_inputs: ExampleInputs, check: bool | str,
                    tolerance: float | None, pending: Any) -> PruneReport:
    """Apply ``p`` and verify it against the masked original, then compensate; on any failure restore the model."""
    macs_before, params_before, bytes_before = graph_macs(analysis.coupled.captured), param_count(model), state_bytes(model)
    can_run = has_weights(model)
    subset_result = _exact_subset(model, analysis, p, example_inputs, check, tolerance) if check and can_run else None
    reference = reference_outputs(model, p, example_inputs) if check else None  # on meta: shapes and dtypes only
    undo = _snapshot(list(model.modules()))
    apply_plan(model, p)
    result = None
    notes: list[str] = []
    after: list[Any] = []  # the re-export check's capture of the pruned model, reused to count its MACs
    if reference is not None:
        result = compare(reference, model, p, example_inputs, tolerance=tolerance,
                         exporter=lambda m, x: after.append(capture(m, x)))
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
    if pending is not None:
        try:
            compensation = pending.finish(model, p)  # after verification, which checks the plain surgery
        except Exception:
            undo.restore()
            raise
    return PruneReport(model, p, result, macs_before, macs_after, params_before, param_count(model), notes,
                       compensation, bytes_before, state_bytes(model))


def _exact_subset(model: nn.Module, analysis: Analysis, p: Plan, example_inputs: ExampleInputs,
                  check: bool | str, tolerance: float | None) -> VerifyResult | None:
    """Numerically check the exact groups of a plan that also has structural-only groups (on a copy)."""
    exact = {g.id: np.asarray(g.removed, dtype=np.int64) for g in p.groups if g.removed and g.exact}
    if p.exact or not exact:
        return None
    size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    if check != "full" and size > 2 * 1024**3:
        return None
    subset = build_plan(analysis, exact, dict(p.settings))
    return verify_exact_subset(model, subset, example_inputs, tolerance=tolerance)


def count(model: nn.Module, example_inputs: ExampleInputs) -> tuple[int, int]:
    """(MACs of one forward pass on ``example_inputs``, number of parameters)."""
    from secateurs.graph.counting import count as _count

    return _count(model, example_inputs)


__all__ = ["analyze", "apply", "count", "plan", "prune", "run", "verify"]
