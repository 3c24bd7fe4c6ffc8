"""Pruning quality on scikit-learn's digits: every secateurs criterion vs Torch-Pruning, then recovery.

    PYTHONPATH=. python bench/bench_quality.py --quick   # development: 1 seed, 2 targets, short recovery
    PYTHONPATH=. python bench/bench_quality.py           # full: 3 seeds (see --help)

Per seed, a small BN CNN is trained (seeded, >= 97% test accuracy) and copied for every cell:
1. grid: each criterion (ours: every registered one; Torch-Pruning 1.6.1: l1, l2, fpgm, lamp, bn_scale,
   taylor with BasePruner) at each target (30/50/70% of channels, local; 50% of MACs), test accuracy right
   after pruning, after compensation (ours, where ``sc.prune(compensate=...)`` exists) and after the
   same 3-epoch fine-tune;
2. recovery (issue #6): 50/70% of channels recovered by fine-tuning, distillation and sparsity training
   (ours and Torch-Pruning's BNScalePruner / GroupNormPruner), all through the same ``sc.recover`` loop.
Writes bench/results/quality[-quick].{md,json} and prints the Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import quality_grid
import quality_ours
import quality_recovery as qr
import quality_report as rep
import quality_tp
import torch
from digits_cnn import BASE_EPOCHS, Workload, train_base

FULL_TARGETS = ["0.3", "0.5", "0.7", "macs=0.5"]
QUICK_TARGETS = ["0.5", "macs=0.5"]


def recovery_plan(epochs: int, lam: float, gl_lam: float, tp_gl: float, sparse_epochs: int, lr: float,
                  comps: list[str]) -> list[tuple[qr.Flow, list[qr.Recipe]]]:
    ft_cos = qr.Recipe(f"fine-tune {epochs} ep, cosine lr {lr:g}", epochs, lr=lr, cosine=True)
    kd_cos = qr.Recipe(f"distill {epochs} ep, cosine lr {lr:g}, T=4, α=0.7", epochs, lr=lr, cosine=True,
                       distill=True)
    plan: list[tuple[qr.Flow, list[qr.Recipe]]] = [
        (qr.Flow("secateurs", "l2"), [qr.FINE_TUNE_3, ft_cos, kd_cos]),
        (qr.Flow("secateurs", "bn_scale", qr.Sparsity("bn_l1", lam, sparse_epochs)), [ft_cos]),
        (qr.Flow("secateurs", "l2", qr.Sparsity("group_lasso", gl_lam, sparse_epochs)), [ft_cos]),
    ]
    if "lstsq" in comps:
        plan.insert(1, (qr.Flow("secateurs", "l2", compensate="lstsq"), [qr.FINE_TUNE_3, ft_cos]))
    if quality_tp.available():
        plan += [
            (qr.Flow("torch-pruning", "l2"), [qr.FINE_TUNE_3, ft_cos]),
            (qr.Flow("torch-pruning", "bn_scale", qr.Sparsity("bnscale", lam, sparse_epochs)), [ft_cos]),
            (qr.Flow("torch-pruning", "l2", qr.Sparsity("groupnorm", tp_gl, sparse_epochs)), [ft_cos]),
        ]
    return plan


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 seed, 2 targets, 50%% recovery only, short recipes")
    ap.add_argument("--seeds", type=int, nargs="+", help="training seeds (default 0 1 2; quick: 0)")
    ap.add_argument("--grid-seeds", type=int, nargs="*", help="seeds that run every target (default: the first seed)")
    ap.add_argument("--key-targets", nargs="*", default=["0.5"],
                    help="targets the other seeds run, for mean ± std of the key rows (default 0.5)")
    ap.add_argument("--targets", nargs="+", help="e.g. 0.5  macs=0.5  0.5:global (default 0.3 0.5 0.7 macs=0.5)")
    ap.add_argument("--criteria", nargs="+", help="our criteria (default: every registered one)")
    ap.add_argument("--tp", nargs="*", help="Torch-Pruning importances (default all of quality_tp.IMPORTANCES)")
    ap.add_argument("--recovery-ratios", type=float, nargs="*", help="default 0.5 0.7 (quick: 0.5); none to skip")
    ap.add_argument("--recovery-epochs", type=int, help="epochs of the longer recipes (default 12; quick 4)")
    ap.add_argument("--recovery-lr", type=float, default=0.02)
    ap.add_argument("--sparsity-lambda", type=float, default=0.2,
                    help="bn_l1 and TP BNScalePruner reg (the same penalty: λ·sign(γ) added to the gradient)")
    ap.add_argument("--group-lambda", type=float, default=0.2, help="our group_lasso strength")
    ap.add_argument("--tp-group-reg", type=float, default=0.1, help="TP GroupNormPruner reg (a different penalty)")
    ap.add_argument("--sparsity-epochs", type=int, help="sparsity-training epochs (default 8; quick 3)")
    ap.add_argument("--base-epochs", type=int, default=BASE_EPOCHS, help="training epochs of the unpruned model")
    ap.add_argument("--calibration-batches", type=int, default=8,
                    help="64-image training batches for data criteria and compensation (default 8 = 512 images)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--name", help="file stem under --out (default quality, or quality-quick)")
    a = ap.parse_args()
    a.seeds = a.seeds or ([0] if a.quick else [0, 1, 2])
    a.grid_seeds = a.seeds[:1] if a.grid_seeds is None else a.grid_seeds
    a.targets = a.targets or (QUICK_TARGETS if a.quick else FULL_TARGETS)
    a.tp = list(quality_tp.IMPORTANCES) if a.tp is None else a.tp
    a.recovery_ratios = ([0.5] if a.quick else [0.5, 0.7]) if a.recovery_ratios is None else a.recovery_ratios
    a.recovery_epochs = a.recovery_epochs or (4 if a.quick else 12)
    a.sparsity_epochs = a.sparsity_epochs or (3 if a.quick else 8)
    return a


def meta(args: argparse.Namespace) -> dict[str, Any]:
    def git(*cmd: str) -> str:
        try:
            return subprocess.run(["git", *cmd], capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "?"

    cpu = "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or "?"
    tp_version = "not installed"
    if quality_tp.available():
        from importlib.metadata import version

        tp_version = version("torch-pruning")  # torch_pruning.__version__ of 1.6.1 still says 1.6.0
    return {"command": "python bench/bench_quality.py " + " ".join(sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpu": cpu, "nproc": os.cpu_count(),
            "threads": args.threads, "torch": torch.__version__, "torch_pruning": tp_version,
            "secateurs_commit": git("rev-parse", "--short", "HEAD") + (" (dirty)" if git("status", "--porcelain") else ""),
            "seeds": args.seeds, "grid_seeds": args.grid_seeds, "key_targets": args.key_targets, "load_start": os.getloadavg()[0]}


def markdown(m: dict[str, Any], rows: list[dict[str, Any]], comps: list[str]) -> str:
    bases = rep.mean_std(r["base"] for r in rows if r["section"] == "base")
    out = [f"`{m['command']}` — {m['date']}, {m['cpu']}, nproc {m['nproc']}, {m['threads']} thread(s), "
           f"torch {m['torch']}, torch-pruning {m['torch_pruning']}, secateurs {m['secateurs_commit']}, "
           f"seeds {m['seeds']} (every target: {m['grid_seeds']}; others: {m['key_targets']}), wall {m['wall_s'] / 60:.1f} min, "
           f"load {m['load_start']:.1f} -> {m['load_end']:.1f}.",
           "", f"Unpruned test accuracy: {rep.pct(bases)} ({m['n_test']} test images; 1 image = "
           f"{100 / m['n_test']:.2f} points).",
           f"Compensation modes found: {', '.join(comps) if comps else 'none (' + rep.NA + ')'}.", ""]
    if any(r["section"] == "grid" for r in rows):
        table, verdicts = rep.summary(rows, comps)
        out += ["### Best criterion per target", "", table, "", "### Every criterion", "",
                rep.grid_table(rows, comps), ""]
        m["verdicts"] = verdicts
    if any(r["section"] == "recovery" for r in rows):
        out += ["### Recovery", "", rep.recovery_table(rows), ""]
    return "\n".join(out)


def main() -> int:
    args = parse()
    torch.set_num_threads(args.threads)
    m = meta(args)
    t0 = time.time()
    targets = [quality_ours.parse_target(t) for t in args.targets]
    key_targets = [quality_ours.parse_target(t) for t in args.key_targets]
    criteria = quality_ours.criteria(args.criteria)
    comps = quality_ours.compensations()
    tp = args.tp if quality_tp.available() else []
    rows: list[dict[str, Any]] = []
    for seed in args.seeds:
        w = Workload(seed, calibration_batches=args.calibration_batches)
        t = time.time()
        base = train_base(w.data, seed, args.base_epochs)
        base_acc = w.accuracy(base)
        m["n_test"] = len(w.y_test)
        print(f"seed {seed}: unpruned test accuracy {base_acc:.4f} (trained in {time.time() - t:.0f} s)", flush=True)
        rows.append({"section": "base", "seed": seed, "base": base_acc})
        cells = targets if seed in args.grid_seeds else key_targets
        if cells:
            rows += quality_grid.run(base, w, criteria, tp, cells, comps, seed, log=lambda s: print(s, flush=True))
        if args.recovery_ratios:
            plan = recovery_plan(args.recovery_epochs, args.sparsity_lambda, args.group_lambda, args.tp_group_reg,
                                 args.sparsity_epochs,
                                 args.recovery_lr, comps)
            rec = qr.run(base, plan, args.recovery_ratios, w, seed, log=lambda s: print(s, flush=True))
            rows += [{**r, "base": base_acc} for r in rec]
    m["wall_s"], m["load_end"] = time.time() - t0, os.getloadavg()[0]
    md = markdown(m, rows, comps)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = args.name or ("quality-quick" if args.quick else "quality")
    (out / f"{stem}.md").write_text(md + "\n")
    (out / f"{stem}.json").write_text(json.dumps({"meta": m, "compensations": comps, "rows": rows}, indent=1))
    print("\n" + md)
    print(f"\nwritten: {out / stem}.md, .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
