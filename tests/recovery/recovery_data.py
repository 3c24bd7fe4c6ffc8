"""Toy models and batches the recovery tests and their torchrun workers share."""

import torch
from torch import nn


def small_cnn(width: int = 8, classes: int = 4) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, classes),
    )


def mlp(width: int = 16, inputs: int = 6, classes: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, width), nn.ReLU(), nn.Linear(width, classes))


def image_batches(n: int = 6, batch: int = 8, classes: int = 4, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Learnable toy images: the class sets the mean brightness of one quadrant."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        y = torch.randint(0, classes, (batch,), generator=g)
        x = torch.randn(batch, 1, 8, 8, generator=g) * 0.5
        for i, c in enumerate(y.tolist()):
            r, col = divmod(c, 2)
            x[i, 0, r * 4:(r + 1) * 4, col * 4:(col + 1) * 4] += 2.0
        out.append((x, y))
    return out


def vector_batches(n: int = 4, batch: int = 8, inputs: int = 6, classes: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(inputs, classes, generator=g)
    out = []
    for _ in range(n):
        x = torch.randn(batch, inputs, generator=g)
        out.append((x, (x @ w).argmax(1)))
    return out
