"""The default ``sc.recover`` on the digits CNN with 70% of channels pruned: the recipe search behind
RecoverConfig's defaults (issue #16).

    PYTHONPATH=. python bench/bench_default_recovery.py                 # the grid, 3 seeds
    PYTHONPATH=. python bench/bench_default_recovery.py --only default  # the defaults alone

Per seed the unpruned CNN is trained (``digits_cnn.train_base``, cached under bench/results/cache), a copy
is pruned with ``sc.prune(model, x, ratio=0.7)`` (default criterion) and recovered by
``sc.recover(pruned, data, teacher=unpruned, seed=seed, progress=False, **recipe)``: the recipes change
only RecoverConfig fields, so ``{}`` is exactly the default call. One JSON line per run goes to
bench/results/default_recovery.jsonl (appended; a rerun skips the runs already there) and a table of
mean ± std over seeds is printed.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from digits_cnn import Workload, cnn, train_base

import secateurs as sc

OLD = {"epochs": 3, "lr": 0.01, "schedule": "constant", "temperature": 2.0}  # the defaults before issue #16, 3 epochs

RECIPES: dict[str, dict[str, Any]] = {
    "old defaults, 3 ep": OLD,
    "old defaults, 12 ep": {**OLD, "epochs": 12},
    "defaults before #16 (1 ep)": {"epochs": 1, "lr": 0.01, "schedule": "constant", "temperature": 2.0},
    "default": {},
}
for ep in (3, 6, 12):
    for lr in (0.01, 0.02, 0.05):
        for T in (1.0, 2.0, 4.0):
            for sched in ("constant", "cosine"):
                RECIPES[f"{sched} lr {lr:g} T {T:g} {ep} ep"] = {"epochs": ep, "lr": lr, "temperature": T,
                                                                   "schedule": sched}
for a in (0.5, 0.9):
    RECIPES[f"cosine lr 0.02 T 4 12 ep, CE alpha {a:g}"] = {"epochs": 12, "lr": 0.02, "temperature": 4.0,
                                                             "schedule": "cosine", "alpha": a, "_ce": True}
RECIPES["cosine lr 0.02 T 4 12 ep, warmup 0.1"] = {"epochs": 12, "lr": 0.02, "temperature": 4.0,
                                                   "schedule": "cosine", "warmup": 0.1}


def base_model(w: Workload, seed: int, cache: Path) -> torch.nn.Module:
    from safetensors.torch import load_file, save_file

    path = cache / f"digits_base_seed{seed}.safetensors"
    if path.is_file():
        m = cnn()
        m.load_state_dict(load_file(str(path)))
        return m
    m = train_base(w.data, seed)
    cache.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(path))
    return m


def run(name: str, recipe: dict[str, Any], pruned: torch.nn.Module, base: torch.nn.Module, w: Workload,
        seed: int) -> dict[str, Any]:
    import torch.nn.functional as F

    kw = {k: v for k, v in recipe.items() if not k.startswith("_")}
    m = copy.deepcopy(pruned)
    t = time.time()
    sc.recover(m, w.data, teacher=base, loss=F.cross_entropy if recipe.get("_ce") else None, seed=seed,
               progress=False, **kw)
    return {"recipe": name, "seed": seed, "acc": w.accuracy(m), "secs": time.time() - t, "load": os.getloadavg()[0]}


def table(rows: list[dict[str, Any]], bases: dict[int, float]) -> str:
    out = ["| recipe | recovered (mean ± std) | lost vs unpruned (points) | seeds |", "|---|---|---|---|"]
    names = list(dict.fromkeys(r["recipe"] for r in rows))
    for name in names:
        accs = [r["acc"] * 100 for r in rows if r["recipe"] == name]
        lost = [bases[r["seed"]] * 100 - r["acc"] * 100 for r in rows if r["recipe"] == name]
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        out.append(f"| {name} | {statistics.mean(accs):.2f} ± {sd:.2f} | {statistics.mean(lost):.2f} "
                   f"(worst {max(lost):.2f}) | {len(accs)} |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--only", nargs="*", help="recipe names (default: all)")
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "default_recovery.jsonl"
    done = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    names = args.only or list(RECIPES)
    rows: list[dict[str, Any]] = []
    bases: dict[int, float] = {}
    for seed in args.seeds:
        w = Workload(seed)
        base = base_model(w, seed, out / "cache")
        bases[seed] = w.accuracy(base)
        pruned = copy.deepcopy(base)
        sc.prune(pruned, w.example, ratio=0.7)
        print(f"seed {seed}: unpruned {bases[seed]:.4f}, pruned 70% {w.accuracy(pruned):.4f}", flush=True)
        for name in names:
            prev = [r for r in done if r["recipe"] == name and r["seed"] == seed]
            row = prev[-1] if prev else run(name, RECIPES[name], pruned, base, w, seed)
            if not prev:
                with log.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"  {name}: {row['acc']:.4f} ({row['secs']:.0f} s, load {row['load']:.1f})", flush=True)
            rows.append(row)
    print(f"\nunpruned: {statistics.mean(bases.values()) * 100:.2f} over seeds {args.seeds}\n")
    print(table(rows, bases))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
