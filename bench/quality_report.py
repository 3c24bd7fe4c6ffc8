"""Tables for bench_quality.py: mean ± std over seeds of the grid and recovery rows, and a summary
of our best criterion against Torch-Pruning's best per target. Pure functions of the row dicts."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

Row = dict[str, Any]
NA = "n/a (not available)"


def mean_std(values: Iterable[float | None]) -> tuple[float, float, int] | None:
    """(mean, sample standard deviation, n) of the values that are not None; None when there are none."""
    v = [float(x) for x in values if x is not None]
    if not v:
        return None
    m = sum(v) / len(v)
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    return m, sd, len(v)


def pct(stat: tuple[float, float, int] | None) -> str:
    """Accuracy in percent: ``98.9`` for one seed, ``98.9 ± 0.3`` for several."""
    if stat is None:
        return "-"
    m, sd, n = stat
    return f"{100 * m:.1f}" if n == 1 else f"{100 * m:.1f} ± {100 * sd:.1f}"


def groups(rows: Sequence[Row], keys: Sequence[str]) -> dict[tuple[Any, ...], list[Row]]:
    """Rows grouped by the values of ``keys``, in order of first appearance."""
    out: dict[tuple[Any, ...], list[Row]] = {}
    for r in rows:
        out.setdefault(tuple(r.get(k) for k in keys), []).append(r)
    return out


def _table(head: list[str], lines: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                     + ["| " + " | ".join(c.replace("|", "/") for c in cells) + " |" for cells in lines])


def grid_table(rows: Sequence[Row], comps: Sequence[str]) -> str:
    """One line per (target, tool, criterion): MACs/params left, accuracy pruned / compensated / fine-tuned."""
    head = ["target", "tool", "criterion", "MACs left", "params left", "pruned", "+ lstsq", "+ bias", "+ fine-tune"]
    lines = []
    for (target, tool, crit), rs in groups([r for r in rows if r["section"] == "grid"],
                                           ("target", "tool", "criterion")).items():
        errors = [r["error"] for r in rs if "error" in r]
        if errors:
            lines.append([target, tool, crit, "", "", f"FAILED: {errors[0]}", "", "", ""])
            continue
        comp = []
        for mode in ("lstsq", "bias"):
            if tool != "secateurs":
                comp.append("—")
            elif mode not in comps:
                comp.append(NA)
            else:
                comp.append(pct(mean_std(r.get(mode) for r in rs)))
        macs = mean_std(r["macs"] for r in rs)
        params = mean_std(r["params"] for r in rs)
        lines.append([target, tool, crit, f"{macs[0]:.1%}" if macs else "-", f"{params[0]:.1%}" if params else "-",
                      pct(mean_std(r["pruned"] for r in rs)), *comp, pct(mean_std(r["ft"] for r in rs))])
    return _table(head, lines)


def _best(rows: Sequence[Row], tool: str, column: str) -> tuple[str, tuple[float, float, int]] | None:
    best: tuple[str, tuple[float, float, int]] | None = None
    for (crit,), rs in groups([r for r in rows if r["tool"] == tool and "error" not in r], ("criterion",)).items():
        s = mean_std(r.get(column) for r in rs)
        if s is not None and (best is None or s[0] > best[1][0]):
            best = (crit, s)
    return best


def summary(rows: Sequence[Row], comps: Sequence[str]) -> tuple[str, list[Row]]:
    """Per target: our best criterion vs Torch-Pruning's best right after pruning, our best with compensation
    (which TP does not have), and both after the same fine-tune. Differences are of the means, in points."""
    head = ["target", "secateurs best, pruned", "TP best, pruned", "criterion: ours − TP",
            "secateurs best + compensation", "compensated − TP", "secateurs best + fine-tune", "TP best + fine-tune"]
    lines, verdicts = [], []

    def cell(b: tuple[str, tuple[float, float, int]] | None) -> str:
        return f"{pct(b[1])} ({b[0]})" if b else "-"

    def diff(a: tuple[str, tuple[float, float, int]] | None, b: tuple[str, tuple[float, float, int]] | None
             ) -> float | None:
        return 100 * (a[1][0] - b[1][0]) if a and b else None

    for (target,), rs in groups([r for r in rows if r["section"] == "grid"], ("target",)).items():
        ours, tp = _best(rs, "secateurs", "pruned"), _best(rs, "torch-pruning", "pruned")
        comp = [b for b in (_best(rs, "secateurs", m) for m in comps) if b is not None]
        best_comp = max(comp, key=lambda b: b[1][0]) if comp else None
        d_crit, d_comp = diff(ours, tp), diff(best_comp, tp)
        verdicts.append({"target": target, "ours_best": ours[0] if ours else None, "diff_points": d_crit,
                         "beats": d_crit is not None and d_crit > 0,
                         "ours_best_compensated": best_comp[0] if best_comp else None, "diff_compensated": d_comp})
        lines.append([target, cell(ours), cell(tp), "-" if d_crit is None else f"{d_crit:+.1f}",
                      cell(best_comp) if comps else NA, "-" if d_comp is None else f"{d_comp:+.1f}",
                      cell(_best(rs, "secateurs", "ft")), cell(_best(rs, "torch-pruning", "ft"))])
    return _table(head, lines), verdicts


def recovery_table(rows: Sequence[Row]) -> str:
    """One line per (ratio, flow, recipe): accuracy pruned and recovered, and points lost vs unpruned."""
    head = ["channels removed", "flow", "recovery", "pruned", "recovered", "lost vs unpruned (points)", "seeds"]
    lines = []
    for (ratio, flow, recipe), rs in groups([r for r in rows if r["section"] == "recovery"],
                                            ("ratio", "flow", "recipe")).items():
        rec = mean_std(r["recovered"] for r in rs)
        lost = mean_std(r["base"] - r["recovered"] for r in rs) if all("base" in r for r in rs) else None
        lost_s = "-" if lost is None else (f"{100 * lost[0]:.2f}" if lost[2] == 1
                                             else f"{100 * lost[0]:.2f} ± {100 * lost[1]:.2f}")
        lines.append([f"{ratio:.0%}", flow, recipe, pct(mean_std(r["pruned"] for r in rs)), pct(rec), lost_s,
                      str(len(rs))])
    return _table(head, lines)
