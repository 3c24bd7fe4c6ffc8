"""Scores for 2:4 masks, one registered function per method: higher means keep.

A score function gets the weight as an (out, in) matrix (Hugging Face ``Conv1D`` weights arrive
transposed), the layer path and the calibration statistics (None for data-free methods), and returns
an (out, in) tensor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from secateurs.errors import InvalidArgumentError
from secateurs.registry import Registry

if TYPE_CHECKING:
    from secateurs.calibration.stats import Statistics

ScoreFn = Callable[[torch.Tensor, str, "Statistics | None"], torch.Tensor]


class _Method:
    def __init__(self, fn: ScoreFn, needs_data: bool) -> None:
        self.fn = fn
        self.needs_data = needs_data


METHODS: Registry[_Method] = Registry("2:4 sparsity method")


def register_method(name: str, *, needs_data: bool = False) -> Callable[[ScoreFn], ScoreFn]:
    def add(fn: ScoreFn) -> ScoreFn:
        METHODS.add(name, _Method(fn, needs_data))
        return fn

    return add


def get_method(name: str) -> _Method:
    return METHODS.get(name)


@register_method("magnitude")
def magnitude(weight: torch.Tensor, path: str, stats: Statistics | None) -> torch.Tensor:
    """|W|."""
    return weight.detach().abs()


@register_method("wanda", needs_data=True)
def wanda(weight: torch.Tensor, path: str, stats: Statistics | None) -> torch.Tensor:
    """|W_ij| * ||X_j||: the weight magnitude times the L2 norm of its input feature over the calibration data."""
    s = stats.inputs.get(path) if stats is not None else None
    if s is None:
        raise InvalidArgumentError(f"wanda 2:4 scores for {path!r}: no input statistics were recorded for this layer "
                                   "(it did not run on the calibration batches)")
    norm = s.norm
    if norm.numel() != weight.shape[1]:
        raise InvalidArgumentError(f"wanda 2:4 scores for {path!r}: recorded {norm.numel()} input features, the layer "
                                   f"has {weight.shape[1]}")
    w = weight.detach().abs().to(torch.float64)
    return w * norm.to(w.device, torch.float64).reshape(1, -1)
