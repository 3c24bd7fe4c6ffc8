"""Markdown tables for bench_llm.py results (secateurs rows, depth rows, Torch-Pruning rows, goals)."""

from __future__ import annotations

import math
from typing import Any


def _ppl(cell: dict[str, Any] | None) -> str:
    if not cell:
        return "-"
    if cell.get("status") != "ok":
        return str(cell.get("status", "-")).split(":")[0]
    x = cell.get("perplexity")
    if x is None or not math.isfinite(x):
        return "nan"
    return f"{x:.3f}" if x < 100 else f"{x:.4g}"


def _kept(cell: dict[str, Any] | None) -> str:
    if not cell or cell.get("status") != "ok":
        return "-"
    w = cell.get("widths", {})
    shape = f"h{w.get('hidden')} q{w.get('heads')}/kv{w.get('kv_heads')} ffn{w.get('ffn')}"
    if "layers" in w:
        shape = f"L{w['layers']} " + shape
    return f"{cell['params_ratio']:.1%} ({shape})"


def _best(values: list[float]) -> float | None:
    ok = [v for v in values if v is not None and math.isfinite(v)]
    return min(ok) if ok else None


def markdown(res: dict[str, Any]) -> str:
    base = res["baseline"]
    out = [f"Unpruned held-out perplexity **{base:.3f}** per byte (unigram baseline {res['unigram_perplexity']:.3f}).",
           "", "| setting | criterion | params kept (widths) | no compensation | bias | lstsq |", "|---|---|---|---|---|---|"]
    best: dict[str, float | None] = {}
    for row in res["width"]:
        cells = [row.get(k) for k in ("none", "bias", "lstsq")]
        kept = next((_kept(c) for c in cells if c and c.get("status") == "ok"), "-")
        out.append(f"| {row['setting']} | {row['criterion']} | {kept} | " + " | ".join(_ppl(c) for c in cells) + " |")
        vals = [c.get("perplexity") for c in cells if c and c.get("status") == "ok"]
        best[row["setting"]] = _best([b for b in (best.get(row["setting"]), *vals) if b is not None])
    for row in res["depth"]:
        out.append(f"| {row['setting']} | {row['criterion']} | {_kept(row)} | {_ppl(row)} | n/a | n/a |")
        if row.get("status") == "ok":
            best[row["setting"]] = _best([b for b in (best.get(row["setting"]), row["perplexity"]) if b is not None])
    out += ["", "Torch-Pruning 1.6.1 (its LLM example's settings, `GroupMagnitudeImportance(p=2)`):", "",
            "| ratio | mode | outcome | params kept (widths) | perplexity |", "|---|---|---|---|---|"]
    tp: dict[tuple[float, str], dict[str, Any]] = {}
    for row in res["torch_pruning"]:
        outcome = row["status"] if row["status"] == "ok" else f"{row['status']} in: {row.get('stage', '?')}"
        out.append(f"| {row['ratio']:.0%} | {row['mode']} | {outcome} | {_kept(row)} | {_ppl(row)} |")
        tp[(row["ratio"], row["mode"])] = row
    failed = [row for row in res["torch_pruning"] if row["status"] != "ok"]
    if failed:
        out += ["", "Where Torch-Pruning stopped (stage, then the innermost frames of its stack or error):", ""]
    for row in failed:
        frames = [ln.strip() for ln in row.get("trace", []) if ln.strip().startswith("File")]
        frames = frames[-3:] if row["status"].startswith("error") else frames[:4]  # innermost first or last
        frames = [f.replace("/root/.pyenv/versions/3.11.7/lib/python3.11/site-packages/", "") for f in frames]
        detail = "; ".join(frames + ([row["error"]] if row.get("error") else []))
        out.append(f"- {row['ratio']:.0%} {row['mode']}: {row['status']} in {row.get('stage', '?')}: `{detail[:500]}`")
    out += ["", "Goals (from the issue):", ""]
    for name, value in best.items():
        if value is None:
            continue
        line = f"- {name}: best secateurs perplexity {value:.3f} ({value / base - 1:+.1%} vs unpruned)"
        mode = "example" if "hidden" in name else "ffn" if "FFN only" in name else "heads_ffn"
        peer = next((row for (r, m), row in tp.items() if m == mode and name.startswith(f"width {r:.0%}")), None)
        if peer is not None and peer["status"] == "ok":
            line += (f"; Torch-Pruning ({mode}): {peer['perplexity']:.4g} -> "
                     f"{'better' if value < peer['perplexity'] else 'NOT better'}")
        elif peer is not None:
            line += f"; Torch-Pruning ({mode}) gave no model ({peer['status']})"
        out.append(line)
    twenty = {k: v for k, v in best.items() if k.startswith("width 20%") and v is not None}
    if twenty:
        rises = {k: v / base - 1 for k, v in twenty.items()}
        out.append("- 20% width with < 25% perplexity rise before fine-tuning (best criterion/compensation): "
                   + ", ".join(f"{k.removeprefix('width 20% ')} {r:+.1%} ({'met' if r < 0.25 else 'NOT met'})"
                               for k, r in rises.items()))
    m = res["machine"]
    out += ["", f"Machine: {m['processor']}, {m['cpus']} CPUs (shared), {m['threads']} thread(s), torch {m['torch']}; "
            f"{res['date']}; wall time {res.get('wall_seconds', '?')} s."]
    return "\n".join(out) + "\n"
