"""The digits workload shared by bench_recovery.py and bench_quality.py: data, model, training, accuracy.

scikit-learn's ``load_digits`` (1,797 8x8 images, no download), a fixed stratified split, a small CNN with
BatchNorm, and a seeded training recipe built on ``sc.recover``. Nothing here knows about pruning.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import secateurs as sc

Batch = tuple[torch.Tensor, torch.Tensor]
OptimizerFactory = Callable[[Any], torch.optim.Optimizer]

BASE_EPOCHS = 25
BASE_LR = 3e-3


def digits(seed: int = 0, test_size: float = 0.25) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_test, y_test); the stratified split depends only on ``seed``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target, dtype=torch.long)
    tr, te = train_test_split(range(len(y)), test_size=test_size, random_state=seed, stratify=d.target)
    return x[tr], y[tr], x[te], y[te]


def cnn() -> nn.Sequential:
    """Three 3x3 conv + BN + ReLU blocks (32, 64, 64 channels), global average pool, linear classifier."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    )


def batches(x: torch.Tensor, y: torch.Tensor, size: int, seed: int) -> list[Batch]:
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

    def __iter__(self) -> Iterator[Batch]:
        return iter(batches(self.x, self.y, self.size, self.seed * 1000 + self.epoch))


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    was = model.training
    model.eval()
    acc = (model(x).argmax(1) == y).float().mean().item()
    model.train(was)
    return acc


def adam(lr: float = BASE_LR) -> OptimizerFactory:
    return lambda params: torch.optim.Adam(params, lr=lr)


def cosine_lr(step: int, total: int, lr: float, warmup: int = 0) -> float:
    """Learning rate of optimizer step ``step`` (0-based) of ``total``: linear warm-up, then cosine to 0."""
    if warmup and step < warmup:
        return lr * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * lr * (1.0 + math.cos(math.pi * t))


def cosine_sgd(total_steps: int, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
               warmup: int = 0) -> OptimizerFactory:
    """Factory for ``recover(optimizer=...)``: SGD whose lr follows ``cosine_lr`` over ``total_steps`` steps.

    ``recover`` has no scheduler argument; a step pre-hook sets the lr before every step instead.
    """

    def make(params: Any) -> torch.optim.Optimizer:
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
        count = [0]

        def pre_step(o: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            for g in o.param_groups:
                g["lr"] = cosine_lr(count[0], total_steps, lr, warmup)
            count[0] += 1

        opt.register_step_pre_hook(pre_step)
        return opt

    return make


def train_base(data: Epochs, seed: int, epochs: int = BASE_EPOCHS) -> nn.Sequential:
    """The unpruned model: ``cnn()`` seeded with ``seed``, Adam for ``epochs`` epochs."""
    torch.manual_seed(seed)
    model = cnn()
    sc.recover(model, data, epochs=epochs, optimizer=adam(), seed=seed, progress=False)
    return model


def cross_entropy_batch(output: torch.Tensor, batch: Batch) -> torch.Tensor:
    """``loss_fn(output, batch)`` for gradient criteria on ``(x, y)`` calibration batches."""
    return F.cross_entropy(output, batch[1])


class Workload:
    """Everything one seed of an experiment reads: train batches, test set, example input, calibration."""

    def __init__(self, seed: int, split_seed: int = 0, calibration_batches: int | None = None):
        self.seed = seed
        self.x_train, self.y_train, self.x_test, self.y_test = digits(split_seed)
        self.data = Epochs(self.x_train, self.y_train, seed=seed)
        self.example = self.x_train[:1]
        cal = batches(self.x_train, self.y_train, 64, seed=10_000 + seed)
        self.calibration: list[Batch] = cal[:calibration_batches] if calibration_batches else cal

    def accuracy(self, model: nn.Module) -> float:
        return accuracy(model, self.x_test, self.y_test)
