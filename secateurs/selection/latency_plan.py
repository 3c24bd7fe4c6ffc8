"""Latency targets planned from a lookup table: bisect the pruning strength on predicted latency, then time the
chosen plan once (interleaved with the unpruned model) and record the prediction error."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from secateurs.graph.capture import eval_mode, normalize_inputs
from secateurs.plans import Plan
from secateurs.selection.latency_table import LatencyTable, Predictor, layer_specs
from secateurs.selection.timing import (
    interleaved_medians,
    model_device,
    real_inputs,
    runnable_copy,
    torch_threads,
    wall_clock_ms,
)
from secateurs.targets import LatencyTarget

Counts = dict[int, int]


def search_table(model: nn.Module, example_inputs: Any, target: LatencyTarget, counts_at: Callable[[float], Counts],
                 build: Callable[[Counts], Plan], pruned_copy: Callable[[Plan], nn.Module]) -> Plan:
    """The plan whose *predicted* kept latency is nearest ``target.fraction`` (bisection on the strength), checked by
    one interleaved timing of the pruned copy against the unpruned model. ``pruned_copy(plan)`` returns a pruned
    meta-device copy (widths only). The table is read from and written back to ``target.table`` when set."""
    t0 = time.perf_counter()
    device = torch.device(target.device) if target.device else model_device(model)
    timer = target.timer or wall_clock_ms
    with torch_threads(target.threads) as threads:
        x = real_inputs(example_inputs, device, target.batch)
        reference = runnable_copy(model, None, device)
        table = LatencyTable.load(target.table) if target.table and _exists(target.table) else \
            LatencyTable(str(device), threads)
        table.measure(layer_specs(reference, x), timer, repeats=target.repeats, warmup=target.warmup)
        if target.table:
            table.save(target.table)
        predictor = Predictor.build(reference, x, table, timer, target.repeats, target.warmup)
        built = time.perf_counter()
        args, kwargs = normalize_inputs(x)
        aim = target.fraction
        probes: list[list[float]] = []
        checks: list[tuple[float, float, float, Plan, float, float]] = []
        for _ in range(_CORRECTIONS + 1):  # a secant step on the table's error, when the first check misses
            strength, predicted, plan = _bisect(aim, target.tolerance, counts_at, build, pruned_copy, predictor, probes)
            pruned = runnable_copy(model, plan, device)
            with eval_mode(reference), torch.no_grad():
                ref_ms, ms = interleaved_medians([reference, pruned], args, kwargs, timer, target.repeats,
                                                 target.warmup)
            checks.append((abs(ms / max(ref_ms, 1e-12) / target.fraction - 1.0), strength, predicted, plan, ref_ms, ms))
            measured = ms / max(ref_ms, 1e-12)
            if abs(measured / target.fraction - 1.0) <= target.tolerance / 2 or measured <= 0 or predicted <= 0:
                break
            aim = min(1.0, aim * predicted / measured)  # the latency the table must predict for the target
        planned = time.perf_counter()
        _, strength, predicted, plan, ref_ms, ms = min(checks, key=lambda c: c[0])
    measured = ms / max(ref_ms, 1e-12)
    plan.settings["strength"] = strength
    plan.settings["achieved"] = {"latency": measured}
    plan.settings["latency"] = {
        "method": "table", "device": str(device), "threads": threads, "repeats": target.repeats,
        "timer": getattr(timer, "__name__", type(timer).__name__), "predicted": predicted, "measured": measured,
        "error": measured / predicted - 1.0, "reference_ms": ref_ms, "pruned_ms": ms, "layers_timed": table.timed,
        "table_entries": len(table.entries), "probes": probes,
        "corrections": len(checks) - 1,
        "seconds": {"table": built - t0, "search and check": planned - built},
    }
    if abs(measured / target.fraction - 1.0) > target.tolerance:
        plan.settings["latency"]["note"] = (f"measured {measured:.3f} of the latency, outside ±{target.tolerance:.0%} "
                                            f"of {target.fraction:g}: the table predicted {predicted:.3f}")
    return plan


#: re-searches after the first timed check, aiming the prediction at target x predicted / measured
_CORRECTIONS = 2


def _bisect(aim: float, tolerance: float, counts_at: Callable[[float], Counts], build: Callable[[Counts], Plan],
            pruned_copy: Callable[[Plan], nn.Module], predictor: Predictor,
            probes: list[list[float]]) -> tuple[float, float, Plan]:
    """(strength, predicted kept latency, plan) whose prediction is nearest ``aim``: bisection on the strength."""
    lo, hi = 0.0, 1.0
    best: tuple[float, float, Plan] | None = None
    for _ in range(14):
        mid = (lo + hi) / 2
        plan = build(counts_at(mid))
        kept = predictor.predict(pruned_copy(plan)) / predictor.full_ms
        probes.append([mid, kept])
        if best is None or abs(kept - aim) < abs(best[1] - aim):
            best = (mid, kept, plan)
        if abs(kept / aim - 1.0) <= tolerance / 4:
            break
        lo, hi = (mid, hi) if kept > aim else (lo, mid)
    assert best is not None  # the loop runs at least once
    return best


def _exists(path: str) -> bool:
    import os

    return os.path.isfile(path)
