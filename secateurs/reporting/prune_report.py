"""PruneReport: what prune() did, with before/after counts and the verification result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from torch import nn

from secateurs.plans import Plan
from secateurs.verification.oracle import VerifyResult

if TYPE_CHECKING:
    from secateurs.compensation.result import CompensationResult


def _fmt(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return f"{n:.0f}"


def _target_lines(settings: dict[str, Any]) -> list[str]:
    """One line per requested budget with the value achieved (latency: measured, with its settings)."""
    targets, achieved = settings.get("targets") or {}, settings.get("achieved") or {}
    lines = []
    for metric, target in targets.items():
        if metric not in achieved:
            continue
        line = f"target {metric}={target:g}: achieved {achieved[metric]:.3f}"
        lat = settings.get("latency") if metric == "latency" else None
        if lat:
            unit = " ms" if lat.get("timer") == "wall_clock_ms" else f" ({lat.get('timer')} units)"
            line += (f" ({lat['reference_ms']:.3g} -> {lat['pruned_ms']:.3g}{unit} per forward, {lat['device']}, "
                     f"{lat['threads']} thread(s), batch {lat['batch']}, median of {lat['repeats']})")
        lines.append(line)
    return lines


@dataclass
class PruneReport:
    model: nn.Module = field(repr=False)
    plan: Plan = field(repr=False)
    verification: VerifyResult | None
    macs_before: int
    macs_after: int
    params_before: int
    params_after: int
    notes: list[str] = field(default_factory=list)
    compensation: CompensationResult | None = None  # prune(compensate=...): method, layers, output error
    bytes_before: int | None = None  # weights (state dict) size, tied tensors once
    bytes_after: int | None = None

    @property
    def macs_ratio(self) -> float:
        return self.macs_after / self.macs_before if self.macs_before else 1.0

    @property
    def params_ratio(self) -> float:
        return self.params_after / self.params_before if self.params_before else 1.0

    def to_dict(self) -> dict[str, Any]:
        v = self.verification
        return {
            "macs_before": self.macs_before, "macs_after": self.macs_after,
            "params_before": self.params_before, "params_after": self.params_after,
            "bytes_before": self.bytes_before, "bytes_after": self.bytes_after,
            "groups_pruned": sum(1 for g in self.plan.groups if g.removed),
            "units_removed": self.plan.removed_units(),
            "verification": None if v is None else {"ok": v.ok, "mode": v.mode, "rel_error": v.rel_error,
                                                     "max_abs_error": v.max_abs_error, "tolerance": v.tolerance,
                                                     "batch_sizes": list(v.batch_sizes), "message": v.message},
            "notes": list(self.notes),
            "compensation": None if self.compensation is None else self.compensation.to_dict(),
            "settings": self.plan.settings,
        }

    def summary(self) -> str:
        lines = [
            f"params {_fmt(self.params_before)} -> {_fmt(self.params_after)} ({self.params_ratio:.1%} kept)",
            f"MACs   {_fmt(self.macs_before)} -> {_fmt(self.macs_after)} ({self.macs_ratio:.1%} kept)",
            f"groups pruned: {sum(1 for g in self.plan.groups if g.removed)} of {len(self.plan.groups)}, "
            f"units removed: {self.plan.removed_units()}",
        ]
        lines.extend(_target_lines(self.plan.settings))
        for container, gone in self.plan.dropped_layers.items():
            how = (self.plan.settings.get("drop_layers") or {}).get("importance", "given")
            lines.append(f"layers dropped: {container or 'model'} {gone} ({how})")
        if self.verification is not None:
            lines.append(self.verification.message)
        if self.compensation is not None:
            lines.append(self.compensation.summary())
            lines.extend(f"note: {n}" for n in self.compensation.notes)
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)
