"""The inputs verification runs: the example inputs (refused when empty) and a second batch size."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils._pytree import tree_leaves, tree_map

from secateurs.errors import InvalidArgumentError
from secateurs.graph.capture import ExampleInputs, normalize_inputs


def tensor_leaves(example_inputs: ExampleInputs) -> list[torch.Tensor]:
    args, kwargs = normalize_inputs(example_inputs)
    return [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]


def check_example_inputs(example_inputs: ExampleInputs) -> None:
    """Refuse inputs that make a comparison vacuous: no tensor at all, or an empty batch."""
    tensors = tensor_leaves(example_inputs)
    if not tensors:
        raise InvalidArgumentError("example_inputs hold no tensor, so verification would compare nothing; pass the "
                                   "inputs forward() takes (a tensor, a tuple of arguments or a dict of keyword arguments)")
    first = tensors[0]
    if first.numel() == 0:
        raise InvalidArgumentError(f"example_inputs hold an empty tensor of shape {tuple(first.shape)} (a batch of 0?), "
                                   "so verification would compare nothing; pass at least one sample")


def batch_size(example_inputs: ExampleInputs) -> int | None:
    """The leading size of the first tensor input (the batch, by convention), or None for a 0-d first tensor."""
    tensors = tensor_leaves(example_inputs)
    return int(tensors[0].shape[0]) if tensors and tensors[0].ndim else None


def resized_batch(example_inputs: ExampleInputs) -> tuple[ExampleInputs, int] | None:
    """The example inputs with one more sample (the first one repeated) in every tensor whose leading size is the
    batch size, and that new size; None when there is no batch dimension to grow."""
    b = batch_size(example_inputs)
    if not b:
        return None

    def grow(x: Any) -> Any:
        if isinstance(x, torch.Tensor) and x.ndim and x.shape[0] == b:
            return torch.cat([x, x[:1]])
        return x

    args, kwargs = normalize_inputs(example_inputs)
    if kwargs:
        return {k: tree_map(grow, v) for k, v in kwargs.items()}, b + 1
    return tuple(tree_map(grow, a) for a in args), b + 1
