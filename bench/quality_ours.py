"""secateurs' side of bench_quality.py: which criteria and compensation modes exist, and one pruning call.

Everything is feature-detected from the installed secateurs, so the benchmark runs on branches that do
not have the ``reconstruction`` criterion or the ``compensate=`` option yet (those columns say so).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from torch import nn

import secateurs as sc
from secateurs.calibration import CalibrationData
from secateurs.scoring.registry import CRITERIA, get_criterion

# the order of the table; criteria registered later (e.g. reconstruction) are appended
PREFERRED = ("l1", "l2", "fpgm", "lamp", "bn_scale", "random", "taylor", "hessian", "activation", "apoz",
             "wanda", "fluctuation", "reconstruction")
COMPENSATIONS = ("lstsq", "bias")


@dataclass(frozen=True)
class Target:
    """How much to remove: ``ratio`` of channels (per group when local), or the fraction of MACs kept."""

    label: str
    ratio: float | None = None
    macs: float | None = None
    scope: str = "local"

    def kwargs(self) -> dict[str, Any]:
        if self.macs is not None:
            return {"macs": self.macs, "scope": self.scope}
        return {"ratio": self.ratio, "scope": self.scope}


def parse_target(text: str) -> Target:
    """``"0.5"`` -> 50% of channels, local; ``"macs=0.5"``; ``"macs=0.5:global"``; ``"0.5:global"``."""
    spec, _, scope = text.partition(":")
    scope = scope or "local"
    if scope not in ("local", "global"):
        raise ValueError(f"target {text!r}: scope must be local or global")
    suffix = "" if scope == "local" else " global"
    if spec.startswith("macs="):
        value = float(spec[5:])
        return Target(f"MACs {value:.0%}{suffix}", macs=value, scope=scope)
    value = float(spec)
    return Target(f"{value:.0%} ch{suffix}", ratio=value, scope=scope)


def criteria(only: list[str] | None = None) -> list[str]:
    have = CRITERIA.names()
    names = [c for c in PREFERRED if c in have] + [c for c in have if c not in PREFERRED]
    return [c for c in names if c in only] if only else names


def compensations() -> list[str]:
    """The ``compensate=`` modes this secateurs accepts, or [] where ``prune`` has no such option."""
    if "compensate" not in inspect.signature(sc.prune).parameters:
        return []
    try:
        from secateurs.compensation import METHODS
    except ImportError:
        return []
    return [m for m in COMPENSATIONS if m in METHODS.names()]


def needs(criterion: str) -> tuple[bool, bool]:
    """(needs calibration data, needs a loss / gradients)."""
    c = get_criterion(criterion)
    return bool(getattr(c, "needs_data", False)), bool(getattr(c, "needs_grads", False))


def _calibration(batches: list[Any]) -> CalibrationData:
    return CalibrationData(batches, inputs=lambda b: b[0], progress=False)


def plan(model: nn.Module, example: Any, analysis: Any, criterion: str, target: Target, calibration: list[Any],
         loss_fn: Any, seed: int = 0) -> Any:
    """``sc.plan`` on a shared analysis (one export per seed instead of one per cell)."""
    data, grads = needs(criterion)
    kw: dict[str, Any] = dict(target.kwargs(), importance=criterion, seed=seed, analysis=analysis)
    if data:
        kw["calibration"] = _calibration(calibration)
    if grads:
        kw["loss_fn"] = loss_fn
    return sc.plan(model, example, **kw)


def pruned_copies(model: nn.Module, plan_: Any, calibration: list[Any], modes: list[str]) -> dict[str, nn.Module]:
    """Copies of the unpruned ``model`` with ``plan_`` applied: ``"plain"``, and one per compensation mode.

    For a mode this is exactly what ``sc.prune(..., compensate=mode)`` does around apply (see
    ``secateurs/compensation/pipeline.py``): ``gather`` on the unpruned model, ``apply``, ``compensate``;
    without ``prune``'s verification and re-export, which cost more than the rest on this model.
    """
    import copy

    out = {"plain": sc.apply(copy.deepcopy(model), copy.deepcopy(plan_))}
    if modes:
        from secateurs.compensation import gather

        # one gather serves every mode: lstsq statistics hold the input means the bias method reads
        method = "lstsq" if "lstsq" in modes else modes[0]
        stats = gather(model, plan_, _calibration(calibration), method=method)
        for mode in modes:
            p = copy.deepcopy(plan_)
            m = sc.apply(copy.deepcopy(model), p)
            sc.compensate(m, p, stats, method=mode)
            out[mode] = m
    return out


def prune(model: nn.Module, example: Any, criterion: str, target: Target, calibration: list[Any],
          loss_fn: Any, compensate: str | None = None, seed: int = 0) -> Any:
    """``sc.prune`` in place with data only where the criterion or the compensation reads it."""
    data, grads = needs(criterion)
    kw: dict[str, Any] = dict(target.kwargs(), importance=criterion, seed=seed)
    if data or compensate:
        kw["calibration"] = _calibration(calibration)
    if grads:
        kw["loss_fn"] = loss_fn
    if compensate:
        kw["compensate"] = compensate
    return sc.prune(model, example, **kw)
