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
from torch import nn

import secateurs as sc


def digits(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target, dtype=torch.long)
    tr, te = train_test_split(range(len(y)), test_size=0.25, random_state=seed, stratify=d.target)
    return x[tr], y[tr], x[te], y[te]


def cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    )


def batches(x: torch.Tensor, y: torch.Tensor, size: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    return [(x[order[i:i + size]], y[order[i:i + size]]) for i in range(0, len(y), size)]


class Epochs:
    """Re-iterable batches, reshuffled every epoch (recover calls set_epoch)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, size: int = 64, seed: int = 0):
        self.x, self.y, self.size, self.seed, self.epoch = x, y, size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return (len(self.y) + self.size - 1) // self.size

    def __iter__(self):
        return iter(batches(self.x, self.y, self.size, self.seed * 1000 + self.epoch))


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    was = model.training
    model.eval()
    acc = (model(x).argmax(1) == y).float().mean().item()
    model.train(was)
    return acc


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
    torch.manual_seed(args.seed)
    base = cnn()
    adam = lambda params: torch.optim.Adam(params, lr=3e-3)  # noqa: E731
    sc.recover(base, data, epochs=25, optimizer=adam, seed=args.seed)
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
