"""Markdown for bench_vision.py results: the table, then the notes behind each row."""

from __future__ import annotations

from typing import Any


def _si(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return f"{n:.0f}"


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def verdict(r: dict[str, Any]) -> str:
    if r["tool"] == "unpruned":
        return ""
    check = r.get("check") or {}
    if not check:
        return f"FAILED ({r.get('stage', '?')}): {r.get('error', 'unknown error')}"[:160]
    if not check.get("ok"):
        return f"NO: {check.get('message', '')}"[:160]
    if check.get("mode") == "exact":
        return f"yes, exact (rel. err {check.get('rel_error', 0):.1e})"
    return "yes, structural only"


def table(rows: list[dict[str, Any]], batches: list[int]) -> str:
    head = ["model", "tool", "plan+apply s", "MACs left", "params left"]
    for b in batches:
        head += [f"b{b} ms", f"b{b} speed-up", f"b{b} speed-up/ideal"]
    head.append("verified")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r["tool"] == "unpruned":
            cells = [r["model"], "unpruned", "", f"{_si(r.get('macs'))} MACs", f"{_si(r.get('params'))}"]
        else:
            cells = [r["model"], r["tool"], _num(r.get("seconds"), ".1f"),
                     _num(r.get("macs_frac"), ".1%"), _num(r.get("params_frac"), ".1%")]
        for b in batches:
            cells += [_num(r.get(f"b{b}_ms"), ".1f"),
                      "" if r["tool"] == "unpruned" else _num(r.get(f"b{b}_speedup"), ".2f") + ("x" if r.get(f"b{b}_speedup") else ""),
                      "" if r["tool"] == "unpruned" else _num(r.get(f"b{b}_vs_ideal"), ".2f")]
        cells.append(verdict(r).replace("|", "/"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def notes(rows: list[dict[str, Any]]) -> str:
    out = []
    for r in rows:
        if r["tool"] == "unpruned":
            continue
        items = list(r.get("notes", []))
        check = r.get("check") or {}
        if check:
            items.append(f"check: {check.get('check', '')}: {check.get('message', '')}")
        neutral = r.get("neutral_check") or {}
        if neutral and neutral != check:
            items.append(f"neutral check: {neutral.get('message', '')}")
        if r.get("error"):
            items.append(f"error ({r.get('stage', '?')}): {r['error']}")
        if r.get("count_error"):
            items.append(f"MAC count failed: {r['count_error']}")
        out.append(f"- **{r['model']} / {r['tool']}**: " + "; ".join(i.replace("\n", " ") for i in items))
    return "\n".join(out)


def markdown(rows: list[dict[str, Any]], env: dict[str, Any]) -> str:
    batches = env["batches"]
    if env["mode"] == "quick" or env["repeats"] < 10:
        title = f"QUICK RUN: {env['repeats']} repeats, noisy, for development only"
    else:
        title = "full run"
    return "\n".join([
        f"### Vision benchmark ({title})",
        "",
        f"`{env['command']}` on {env['date_utc']}: {env['cpu']}, nproc {env['nproc']}, "
        f"torch.set_num_threads({env['threads']}), torch {env['torch']}, torchvision {env['torchvision']}, "
        f"torch-pruning {env['torch_pruning']} (`__version__` {env.get('torch_pruning_module', '?')}), secateurs {env['secateurs_commit']}; latency = median of "
        f"{env['repeats']} interleaved runs after {env['warmup']} warm-up; ratio {env['ratio']}; "
        f"load average {env['loadavg_start'][0]:.1f} at start, {env['loadavg_end'][0]:.1f} at end; "
        f"wall time {env['wall_s']:.0f} s.",
        "",
        table(rows, batches),
        "",
        "MACs for every row are counted by `secateurs.count` (MACs of conv/linear/matmul/attention/norm "
        "nodes of the `torch.export` graph, input 1x3x224x224). \"speed-up/ideal\" is the measured speed-up "
        "divided by 1/(MACs left): 1.00 means latency fell as much as MACs did.",
        "",
        notes(rows),
        "",
    ])
