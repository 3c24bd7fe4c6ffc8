"""Pruning torch.export programs (``.pt2``): secateurs vs Torch-Pruning, one run, one table.

    PYTHONPATH=bench python bench/bench_programs.py [--models resnet18 vit_b_16] [--repeats 10]

Per model (torchvision, random init with randomised norm constants, 1x3x224x224): export the eval model
with ``torch.export`` and save the ``.pt2``. secateurs loads it through its pickle-free loader and prunes
half of every group (``sc.prune``: plan, apply, verify against the masked original), writes the pruned
``.pt2`` and loads it back. Torch-Pruning gets the same file in its own process (``tp_program_worker.py``,
under a time limit). The unpruned and pruned programs are then timed interleaved at the exported batch.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from vision_tools import build_model, example_input, randomize_constants_

import secateurs as sc
from secateurs.io.program import load_program, save_program

HERE = Path(__file__).resolve().parent
MODELS = ("resnet18", "mobilenet_v3_small", "convnext_tiny", "vit_b_16")


def interleaved_ms(models: list[torch.nn.Module], x: torch.Tensor, repeats: int, warmup: int = 2) -> list[float]:
    times: list[list[float]] = [[] for _ in models]
    with torch.inference_mode():
        for i in range(warmup + repeats):
            for k, m in enumerate(models):
                t0 = time.perf_counter()
                m(x)
                if i >= warmup:
                    times[k].append((time.perf_counter() - t0) * 1000)
    return [statistics.median(t) for t in times]


def run_model(name: str, ratio: float, repeats: int, timeout: float, tmp: Path) -> dict[str, Any]:
    model = randomize_constants_(build_model(name)).eval()
    x = example_input()
    src = tmp / f"{name}.pt2"
    torch.export.save(torch.export.export(model, (x,), strict=False), str(src))
    row: dict[str, Any] = {"model": name, "pt2_mb": src.stat().st_size / 1e6}
    program = load_program(src).module
    t0 = time.perf_counter()
    report = sc.prune(program, x, ratio=ratio)
    row["secateurs_s"] = time.perf_counter() - t0
    row["macs_kept"], row["params_kept"] = report.macs_ratio, report.params_ratio
    row["verified"] = report.verification.message if report.verification else "not checked"
    row["literals_rewritten"] = len(report.plan.literals)
    pruned_path = save_program(program, x, tmp / f"{name}-pruned.pt2")
    reloaded = load_program(pruned_path).module
    row["pruned_pt2_mb"] = pruned_path.stat().st_size / 1e6
    with torch.inference_mode():
        row["reload_max_abs_diff"] = float((reloaded(x) - program(x)).abs().max())
    unpruned = load_program(src).module
    row["unpruned_ms"], row["pruned_ms"] = interleaved_ms([unpruned, reloaded], x, repeats)
    row["speedup"] = row["unpruned_ms"] / row["pruned_ms"]
    try:
        done = subprocess.run([sys.executable, str(HERE / "tp_program_worker.py"), str(src), str(ratio)],
                              capture_output=True, text=True, timeout=timeout, check=False)
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
        row["torch_pruning"] = json.loads(lines[-1]) if lines else {"outcome": "crashed", "error": done.stderr[-300:]}
    except subprocess.TimeoutExpired:
        row["torch_pruning"] = {"outcome": f"no result within {timeout:.0f} s (killed)"}
    return row


def table(rows: list[dict[str, Any]], env: dict[str, Any]) -> str:
    lines = [f"### Pruning torch.export programs ({env['date']}, torch {env['torch']}, {env['threads']} thread(s), "
             f"ratio {env['ratio']}, latency median of {env['repeats']} interleaved runs at batch 1)", "",
             "| model | secateurs: prune s | MACs kept | params kept | literals rewritten | verified | .pt2 MB before -> after "
             "| unpruned ms | pruned ms | speed-up | Torch-Pruning on the same .pt2 |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    def describe(tp: dict[str, Any]) -> str:
        return tp.get("outcome", "?") + (f": {tp['error']}" if tp.get("error") else "") + (
            f" ({tp['tensors_changed']} tensors changed{', ' + tp['run_error'] if tp.get('run_error') else ''})"
            if "tensors_changed" in tp else "")

    for r in rows:
        tp = r["torch_pruning"]
        tp_text = (f"`ep.module()`: {describe(tp['module'])}; plain GraphModule: {describe(tp['graph_module'])}"
                   if "module" in tp else describe(tp))
        lines.append(f"| {r['model']} | {r['secateurs_s']:.1f} | {r['macs_kept']:.1%} | {r['params_kept']:.1%} | "
                     f"{r['literals_rewritten']} | {r['verified']} | {r['pt2_mb']:.1f} -> {r['pruned_pt2_mb']:.1f} | "
                     f"{r['unpruned_ms']:.1f} | {r['pruned_ms']:.1f} | {r['speedup']:.2f}x | {tp_text} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    env = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch": torch.__version__,
           "threads": args.threads, "ratio": args.ratio, "repeats": args.repeats, "nproc": os.cpu_count()}
    rows = []
    with tempfile.TemporaryDirectory(prefix="secateurs-programs-") as tmp:
        for name in args.models:
            print(f"[{name}] ...", file=sys.stderr, flush=True)
            rows.append(run_model(name, args.ratio, args.repeats, args.timeout, Path(tmp)))
    text = table(rows, env)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "programs.md").write_text(text)
    (args.out / "programs.json").write_text(json.dumps({"env": env, "rows": rows}, indent=1, default=str))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
