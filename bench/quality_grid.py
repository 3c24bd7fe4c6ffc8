"""The criteria grid of bench_quality.py: every criterion x every target, both tools, one trained model.

Each cell starts from a deep copy of the same trained model and records test accuracy right after
pruning (Torch-Pruning at a channel ratio gets exactly our per-layer widths, see
``quality_tp.ratios_for_widths``), after each compensation mode (ours: the plan applied to another copy, then refit as
``sc.prune(compensate=...)`` does),
and after the same fine-tuning recipe, plus the MACs and params left (counted by ``sc.count`` for both
tools, so the numbers are comparable).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import quality_ours
import quality_tp
from digits_cnn import Workload, cross_entropy_batch
from quality_ours import Target
from quality_recovery import FINE_TUNE_3, Recipe, recover
from torch import nn

import secateurs as sc

Row = dict[str, Any]


def _fractions(model: nn.Module, w: Workload, full: tuple[int, int]) -> tuple[float, float]:
    macs, params = sc.count(model, w.example)
    return macs / full[0], params / full[1]


def _cell(tool: str, criterion: str, target: Target, seed: int) -> Row:
    return {"section": "grid", "tool": tool, "criterion": criterion, "target": target.label, "seed": seed}


def ours(base: nn.Module, w: Workload, analysis: Any, criterion: str, target: Target, comps: list[str],
         recipe: Recipe, seed: int, full: tuple[int, int]) -> Row:
    row = _cell("secateurs", criterion, target, seed)
    t = time.perf_counter()
    try:
        plan = quality_ours.plan(base, w.example, analysis, criterion, target, w.calibration, cross_entropy_batch,
                                 seed=seed)
        row["prune_s"] = time.perf_counter() - t
        models = quality_ours.pruned_copies(base, plan, w.calibration, comps)
    except Exception as e:  # a failed cell is a row, not a crash
        return {**row, "error": f"{type(e).__name__}: {e}"[:200]}
    m = models["plain"]
    row["widths"] = widths(m)
    row["pruned"] = w.accuracy(m)
    row["macs"], row["params"] = _fractions(m, w, full)
    for mode in comps:
        row[mode] = w.accuracy(models[mode])
    recover(m, recipe, w, None, seed)
    row["ft"] = w.accuracy(m)
    return row


def widths(model: nn.Module) -> dict[str, int]:
    return {n: m.out_channels for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def torch_pruning(base: nn.Module, w: Workload, importance: str, target: Target, recipe: Recipe, seed: int,
                  full: tuple[int, int], match: dict[str, int] | None = None) -> Row:
    row = _cell("torch-pruning", importance, target, seed)
    t = time.perf_counter()
    glob = target.scope == "global"
    try:
        ratio = target.ratio
        if target.macs is not None:
            ratio = quality_tp.ratio_for_macs(base, w.example, importance, target.macs, w.calibration, glob)
            row["tp_ratio"] = ratio
        m = quality_tp.prune(copy.deepcopy(base), w.example, importance, float(ratio), w.calibration, glob,
                             widths=match if target.macs is None and not glob else None)
    except Exception as e:
        return {**row, "error": f"{type(e).__name__}: {e}"[:200]}
    row["prune_s"] = time.perf_counter() - t
    row["widths"] = widths(m)
    row["pruned"] = w.accuracy(m)
    row["macs"], row["params"] = _fractions(m, w, full)
    recover(m, recipe, w, None, seed)
    row["ft"] = w.accuracy(m)
    return row


def run(base: nn.Module, w: Workload, criteria: list[str], tp_importances: list[str], targets: list[Target],
        comps: list[str], seed: int, recipe: Recipe = FINE_TUNE_3,
        log: Callable[[str], None] = print) -> list[Row]:
    full = sc.count(base, w.example)
    analysis = sc.analyze(base, w.example)
    rows: list[Row] = []
    for target in targets:
        match = None
        for c in criteria:
            rows.append(ours(base, w, analysis, c, target, comps, recipe, seed, full))
            log(_line(rows[-1]))
            match = match or rows[-1].get("widths")
        for imp in tp_importances:
            rows.append(torch_pruning(base, w, imp, target, recipe, seed, full, match))
            log(_line(rows[-1]))
    return rows


def _line(r: Row) -> str:
    if "error" in r:
        return f"  seed {r['seed']} {r['target']:<16} {r['tool']:<13} {r['criterion']:<14} ERROR {r['error']}"
    comp = " ".join(f"{k} {r[k]:.4f}" for k in ("lstsq", "bias") if r.get(k) is not None)
    return (f"  seed {r['seed']} {r['target']:<16} {r['tool']:<13} {r['criterion']:<14} MACs {r['macs']:.1%} "
            f"pruned {r['pruned']:.4f} {comp} ft {r['ft']:.4f}")
