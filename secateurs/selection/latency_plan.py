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
        lo, hi = 0.0, 1.0
        best: tuple[float, float, Plan] | None = None
        probes = []
        for _ in range(14):
            mid = (lo + hi) / 2
            plan = build(counts_at(mid))
            kept = predictor.predict(pruned_copy(plan)) / predictor.full_ms
            probes.append([mid, kept])
            if best is None or abs(kept - target.fraction) < abs(best[1] - target.fraction):
                best = (mid, kept, plan)
            if abs(kept / target.fraction - 1.0) <= target.tolerance / 4:
                break
            lo, hi = (mid, hi) if kept > target.fraction else (lo, mid)
        assert best is not None  # the loop runs at least once
        strength, predicted, plan = best
        planned = time.perf_counter()
        pruned = runnable_copy(model, plan, device)
        args, kwargs = normalize_inputs(x)
        with eval_mode(reference), torch.no_grad():
            ref_ms, ms = interleaved_medians([reference, pruned], args, kwargs, timer, target.repeats, target.warmup)
    measured = ms / max(ref_ms, 1e-12)
    plan.settings["strength"] = strength
    plan.settings["achieved"] = {"latency": measured}
    plan.settings["latency"] = {
        "method": "table", "device": str(device), "threads": threads, "repeats": target.repeats,
        "timer": getattr(timer, "__name__", type(timer).__name__), "predicted": predicted, "measured": measured,
        "error": measured / predicted - 1.0, "reference_ms": ref_ms, "pruned_ms": ms, "layers_timed": table.timed,
        "table_entries": len(table.entries), "probes": probes,
        "seconds": {"table": built - t0, "search": planned - built, "check": time.perf_counter() - planned},
    }
    if abs(measured / target.fraction - 1.0) > target.tolerance:
        plan.settings["latency"]["note"] = (f"measured {measured:.3f} of the latency, outside ±{target.tolerance:.0%} "
                                            f"of {target.fraction:g}: the table predicted {predicted:.3f}")
    return plan


def _exists(path: str) -> bool:
    import os

    return os.path.isfile(path)
