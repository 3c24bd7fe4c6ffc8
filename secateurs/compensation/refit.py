"""compensate(): write the refit weights/biases into a pruned model, transactionally."""

from __future__ import annotations

import math

import torch
from torch import nn

from secateurs.compensation.config import DEFAULT_RIDGE
from secateurs.compensation.consumers import Consumer
from secateurs.compensation.gather import ConsumerStatistics
from secateurs.compensation.methods import Fit, get_method
from secateurs.compensation.new_bias import add_bias_, unsaved_note
from secateurs.compensation.result import CompensationResult
from secateurs.errors import ApplyError, InvalidArgumentError, InvalidTypeError
from secateurs.plans import Plan
from secateurs.surgery.apply import snapshot_modules


def _check_pruned(model: nn.Module, c: Consumer, path: str) -> nn.Module:
    """The pruned module of consumer ``c``, at ``path`` (its name after dropped layers renumbered the blocks)."""
    try:
        module = model.get_submodule(path)
    except AttributeError:
        raise InvalidArgumentError(f"model has no module {path!r}; pass the model the plan was applied to") from None
    w = module._parameters.get("weight")
    full_rows = int(c.original_weight.shape[c.out_dim])
    rows, cols = full_rows if c.kept_out is None else len(c.kept_out), len(c.kept_in) * c.fmap.per_channel
    got = None if w is None else tuple(c.fmap.matrix(w).shape)
    if got != (rows, cols):
        raise InvalidArgumentError(
            f"{c.path}.weight has {got} (out, in) features but the pruned layer should have {(rows, cols)}: "
            "call compensate() after sc.apply(model, plan), on the model the statistics were gathered from")
    return module


def _write(model: nn.Module, module: nn.Module, path: str, c: Consumer, fit: Fit, result: CompensationResult,
           unsaved: list[str]) -> None:
    w = module._parameters["weight"]
    assert w is not None  # checked by _check_pruned
    changed = False
    if fit.weight is not None:
        rows = fit.weight if c.kept_out is None else fit.weight[c.kept_out]
        new = c.fmap.unmatrix(rows.to(w.device), w)
        module._parameters["weight"] = nn.Parameter(new, requires_grad=w.requires_grad)
        changed = True
    if fit.bias is not None:
        b = fit.bias if c.kept_out is None else fit.bias[c.kept_out]
        if module._parameters.get("bias") is None:
            add_bias_(model, path, result.added_biases, result.config_flags, unsaved)
        old = module._parameters["bias"]
        assert old is not None
        module._parameters["bias"] = nn.Parameter(b.to(dtype=old.dtype, device=old.device),
                                                  requires_grad=old.requires_grad)
        changed = True
    if changed:
        result.layers.append(path)


def compensate(model: nn.Module, plan: Plan, statistics: ConsumerStatistics, *, method: str | None = None,
               ridge: float = DEFAULT_RIDGE, add_bias: bool = True) -> CompensationResult:
    """Refit the consumer layers of the pruned ``model`` from ``statistics`` (``gather`` on the unpruned model).

    ``method``: ``"lstsq"`` (weights and bias, needs Gram matrices) or ``"bias"`` (FLAP, bias only); by default
    the one the statistics were gathered for. ``ridge`` damps the least-squares normal equations by that fraction
    of their mean diagonal. ``add_bias=False`` never creates a bias (layers without one keep none: ``bias`` leaves
    them, ``lstsq`` fits without intercept). Transactional: on any failure the model is left as it was. The
    request is recorded in ``plan.settings["compensation"]`` (with the biases created, which ``secateurs.load``
    recreates).
    """
    if not isinstance(statistics, ConsumerStatistics):
        raise InvalidTypeError(f"statistics must come from secateurs.compensation.gather(model, plan, calibration) "
                               f"on the unpruned model, got {type(statistics).__name__}")
    name = method if method is not None else ("lstsq" if statistics.gram else "bias")
    m = get_method(name)
    if m.needs_gram and not statistics.gram:
        raise InvalidArgumentError(f"compensation {name!r} needs Gram matrices; gather(model, plan, calibration, "
                                   f"method={name!r}) before apply")
    if isinstance(ridge, bool) or not isinstance(ridge, (int, float)) or not (ridge >= 0 and math.isfinite(ridge)):
        raise InvalidArgumentError(f"ridge must be a finite number >= 0, got {ridge!r}")
    modules = [(c, path, _check_pruned(model, c, path)) for c in statistics.consumers
               if (path := plan.renamed(c.path)) is not None]  # consumers in dropped blocks are gone
    result = CompensationResult(name, [], notes=list(statistics.notes))
    undo = snapshot_modules(list(model.modules()))
    unsaved: list[str] = []
    try:
        with torch.no_grad():
            for c, path, module in modules:
                with_bias = c.bias is not None or add_bias
                fit = m.fit(c, statistics.stats.moments[c.path], ridge=float(ridge), with_bias=with_bias)
                if fit.note:
                    result.notes.append(fit.note)
                for t in (fit.weight, fit.bias):
                    if t is not None and not bool(torch.isfinite(t).all()):
                        raise ApplyError(f"{c.path}: the {name} fit is not finite (degenerate calibration inputs?); "
                                         "raise ridge=")
                _write(model, module, path, c, fit, result, unsaved)
                c.release()
    except Exception as exc:
        undo.restore()
        if isinstance(exc, ApplyError):
            raise ApplyError(f"{exc}; the model was restored unchanged") from exc
        raise ApplyError(f"compensation failed ({type(exc).__name__}: {exc}); the model was restored unchanged") from exc
    note = unsaved_note(model, unsaved)
    if note:
        result.notes.append(note)
    _record(plan, result, float(ridge), add_bias, statistics.stats.n_batches)
    return result


def _record(plan: Plan, result: CompensationResult, ridge: float, add_bias: bool, batches: int) -> None:
    prev = plan.settings.get("compensation")
    added = dict(prev.get("added_biases") or {}) if isinstance(prev, dict) else {}
    flags = dict(prev.get("config_flags") or {}) if isinstance(prev, dict) else {}
    plan.settings["compensation"] = {
        "method": result.method, "ridge": ridge if result.method == "lstsq" else None, "add_bias": add_bias,
        "batches": batches,
        "layers": len(result.layers), "added_biases": {**added, **result.added_biases},
        "config_flags": {**flags, **result.config_flags}, "notes": sorted(set(result.notes)),
    }
