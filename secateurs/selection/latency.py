"""Latency targets: bisect the pruning strength on measured timings of pruned copies.

The MACs cost model gives the starting strength (the one keeping ``fraction`` of the MACs); each probe
then builds the plan at a strength, applies it to a copy of the model on the measuring device and times
that copy interleaved with the unpruned model (median of ``repeats`` rounds). The kept latency is the
ratio of the two medians, so a slow moment of the machine affects both alike. Bisection stops when the
ratio is within ``tolerance`` of the request.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from secateurs.errors import TargetUnreachableError
from secateurs.graph.capture import eval_mode, normalize_inputs
from secateurs.plans import Plan
from secateurs.selection.timing import (
    Timer,
    interleaved_medians,
    model_device,
    real_inputs,
    runnable_copy,
    torch_threads,
    wall_clock_ms,
)
from secateurs.targets import LatencyTarget

Counts = dict[int, int]


@dataclass
class Probe:
    strength: float
    kept: float  # pruned median / unpruned median
    pruned_ms: float
    reference_ms: float
    plan: Plan


@dataclass
class _Prober:
    """Times the plan of a strength against the unpruned model; identical removal counts are timed once."""

    model: nn.Module
    target: LatencyTarget
    counts_at: Callable[[float], Counts]
    build: Callable[[Counts], Plan]
    device: torch.device
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    timer: Timer
    reference: nn.Module
    cache: dict[tuple[tuple[int, int], ...], Probe] = field(default_factory=dict)
    probes: list[Probe] = field(default_factory=list)

    @staticmethod
    def start(model: nn.Module, example_inputs: Any, target: LatencyTarget, counts_at: Callable[[float], Counts],
              build: Callable[[Counts], Plan]) -> _Prober:
        """Real inputs and a runnable unpruned copy on the timing device."""
        device = torch.device(target.device) if target.device else model_device(model)
        args, kwargs = normalize_inputs(real_inputs(example_inputs, device, target.batch))
        return _Prober(model, target, counts_at, build, device, args, kwargs, target.timer or wall_clock_ms,
                       runnable_copy(model, None, device))

    def __call__(self, x: float) -> Probe:
        counts = self.counts_at(x)
        key = tuple(sorted((g, n) for g, n in counts.items() if n))
        if key not in self.cache:
            plan = self.build(counts)
            pruned = runnable_copy(self.model, plan, self.device)
            with eval_mode(self.reference):
                ref_ms, ms = interleaved_medians([self.reference, pruned], self.args, self.kwargs, self.timer,
                                                 self.target.repeats, self.target.warmup)
            self.cache[key] = Probe(x, ms / max(ref_ms, 1e-12), ms, ref_ms, plan)
            del pruned
        probe = self.cache[key]
        self.probes.append(Probe(x, probe.kept, probe.pruned_ms, probe.reference_ms, probe.plan))
        return probe

    def batch(self) -> int | None:
        for v in (*self.args, *self.kwargs.values()):
            if isinstance(v, torch.Tensor) and v.ndim:
                return int(v.shape[0])
        return None


def search_latency(model: nn.Module, example_inputs: Any, target: LatencyTarget,
                   counts_at: Callable[[float], Counts], build: Callable[[Counts], Plan], start: float) -> Plan:
    """The plan whose measured latency is within ``target.tolerance`` of ``target.fraction``, found by a
    bracketing search on the strength ``x`` in [0, 1] (``counts_at(x)``: units removed per group) from
    ``start``: interpolation inside the bracket, and plain bisection every third step so that it converges
    even when timings are noisy."""
    t, tol = target.fraction, target.tolerance
    with torch_threads(target.threads) as threads:
        probe = _Prober.start(model, example_inputs, target, counts_at, build)
        lo, k_lo, hi, k_hi = 0.0, 1.0, 1.0, math.nan  # kept latency at the bracket ends (nan: not timed)
        x = min(max(start, 0.0), 1.0)
        for i in range(target.max_probes):
            p = probe(x)
            if abs(p.kept / t - 1.0) <= tol:
                return _finish(p, probe, target, threads)
            if p.kept > t:
                lo, k_lo = x, p.kept
                if math.isnan(k_hi) and x < 1.0:  # time the strongest pruning once: is the target reachable?
                    strongest = probe(1.0)
                    if abs(strongest.kept / t - 1.0) <= tol:
                        return _finish(strongest, probe, target, threads)
                    if strongest.kept > t:
                        raise _unreachable(target, probe, strongest=strongest)
                    k_hi = strongest.kept
            else:
                hi, k_hi = x, p.kept
            x = _next_strength(lo, k_lo, hi, k_hi, t, bisect=i % 3 == 2)
            if _same_counts(counts_at, x, lo) or _same_counts(counts_at, x, hi):
                break  # no plan between the two: the units are too coarse here
    raise _unreachable(target, probe)


def _next_strength(lo: float, k_lo: float, hi: float, k_hi: float, t: float, bisect: bool) -> float:
    """Linear interpolation of the kept latency between the bracket ends, kept inside the middle 80% of
    the bracket; the midpoint when asked, or when the ends do not give a usable slope."""
    if bisect or math.isnan(k_hi) or not k_lo > k_hi:
        return (lo + hi) / 2
    x = lo + (k_lo - t) / (k_lo - k_hi) * (hi - lo)
    margin = 0.1 * (hi - lo)
    return min(max(x, lo + margin), hi - margin)


def _same_counts(counts_at: Callable[[float], Counts], a: float, b: float) -> bool:
    return {g: n for g, n in counts_at(a).items() if n} == {g: n for g, n in counts_at(b).items() if n}


def _finish(p: Probe, prober: _Prober, target: LatencyTarget, threads: int) -> Plan:
    plan = p.plan
    plan.settings["strength"] = p.strength
    plan.settings["achieved"] = {"latency": p.kept}
    plan.settings["latency"] = {
        "device": str(prober.device), "threads": threads, "repeats": target.repeats, "warmup": target.warmup,
        "batch": prober.batch(), "timer": getattr(prober.timer, "__name__", type(prober.timer).__name__),
        "tolerance": target.tolerance, "reference_ms": p.reference_ms, "pruned_ms": p.pruned_ms,
        "probes": [[q.strength, q.kept] for q in prober.probes],
    }
    return plan


def _unreachable(target: LatencyTarget, prober: _Prober, strongest: Probe | None = None) -> TargetUnreachableError:
    t = target.fraction
    where = f"on {prober.device} with {torch.get_num_threads()} thread(s), median of {target.repeats}"
    if strongest is not None:
        return TargetUnreachableError(
            f"latency={t:g} cannot be reached {where}: pruning every eligible group as far as allowed keeps "
            f"{strongest.kept:.3f} of the measured latency (the nearest achievable value). Lower min_keep, raise "
            f"max_ratio, ignore fewer modules, or ask for latency >= {strongest.kept:.2f}")
    above = [q.kept for q in prober.probes if q.kept > t]
    below = [q.kept for q in prober.probes if q.kept <= t]
    near = [f"{v:.3f}" for v in (min(above, default=math.nan), max(below, default=math.nan)) if not math.isnan(v)]
    return TargetUnreachableError(
        f"latency={t:g} cannot be met within ±{target.tolerance:.0%} {where}: the nearest plans measured keep "
        f"{' and '.join(near)} of the latency. Ask for one of those values, lower round_to (units too coarse), "
        f"or raise repeats / threads=1 if the timings are noisy")
