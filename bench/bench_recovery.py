"""Recovery after pruning on scikit-learn's digits: fine-tune vs distillation vs slimming-then-prune.

    PYTHONPATH=. python bench/bench_recovery.py [--epochs 6] [--ratios 0.5 0.7]

Trains a small BN CNN (seeded, >= 97% test accuracy), prunes it, recovers it three ways for the same
number of epochs, and prints a table of test accuracy. CPU, one thread: about 4 minutes.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
import torch.nn.functional as F
from digits_cnn import Epochs, accuracy, digits, train_base

import secateurs as sc


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=6, help="recovery epochs for every method")
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.5, 0.7])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    xtr, ytr, xte, yte = digits(args.seed)
    data = Epochs(xtr, ytr, seed=args.seed)
    example = xtr[:1]
    t0 = time.time()
    base = train_base(data, args.seed)
    base_acc = accuracy(base, xte, yte)
    n_base = sum(p.numel() for p in base.parameters())
    print(f"base model: {n_base} params, test accuracy {base_acc:.4f} (trained in {time.time() - t0:.0f} s)")
    if base_acc < 0.97:
        print("warning: base accuracy below 97%")
    teacher = copy.deepcopy(base).eval()
    e = args.epochs
    ft = {"lr": 0.01, "seed": args.seed}
    rows = []
    for ratio in args.ratios:
        for method in ("no recovery", "fine-tune", "distill (KD+CE)", "distill + features", "slimming, prune, fine-tune"):
            t = time.time()
            m = copy.deepcopy(base)
            if method.startswith("slimming"):
                reg = sc.regularizers.bn_l1(m, 1e-3)
                sc.recover(m, data, regularizer=reg, epochs=e, **ft)
            sc.prune(m, example, ratio=ratio)
            if method == "fine-tune" or method.startswith("slimming"):
                sc.recover(m, data, epochs=e, **ft)
            elif method == "distill (KD+CE)":
                sc.recover(m, data, teacher=teacher, loss=F.cross_entropy, alpha=0.7, temperature=4.0, epochs=e, **ft)
            elif method == "distill + features":
                sc.recover(m, data, teacher=teacher, loss=F.cross_entropy, alpha=0.7, temperature=4.0,
                           feature_pairs={"8": "8"}, epochs=e, **ft)
            params = sum(p.numel() for p in m.parameters())
            rows.append((ratio, method, params, accuracy(m, xte, yte), time.time() - t))
    print(f"\nrecovery epochs: {e}; base accuracy {base_acc:.4f}")
    print(f"{'ratio':>5}  {'method':<28} {'params':>7} {'test acc':>8} {'time s':>6}")
    for ratio, method, params, acc, secs in rows:
        print(f"{ratio:>5.2f}  {method:<28} {params:>7d} {acc:>8.4f} {secs:>6.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
