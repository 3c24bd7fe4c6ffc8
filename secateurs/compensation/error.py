"""Output reconstruction error: how far a model's outputs are from the unpruned model's."""

from __future__ import annotations

import math

import torch


def relative_error(reference: list[torch.Tensor], outputs: list[torch.Tensor]) -> float:
    """‖y − y₀‖ / ‖y₀‖ over every floating output (Frobenius norms, summed over outputs); inf if shapes differ."""
    num = den = 0.0
    for a, b in zip(reference, outputs, strict=False):
        if not a.is_floating_point():
            continue
        if a.shape != b.shape:
            return math.inf
        a64, b64 = a.detach().to(torch.float64), b.detach().to(torch.float64)
        num += float((a64 - b64).square().sum())
        den += float(a64.square().sum())
    if len(reference) != len(outputs):
        return math.inf
    return math.sqrt(num / den) if den > 0 else math.sqrt(num)
