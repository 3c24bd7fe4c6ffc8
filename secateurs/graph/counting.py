"""MACs and parameter counts that follow the captured graph."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from torch import nn

from secateurs.graph.capture import Captured, ExampleInputs, OpNode, capture
from secateurs.graph.meta import tensor_shape
from secateurs.graph.ops import OUT, op_info


def _numel(shape: tuple[int, ...] | None) -> int:
    return math.prod(shape) if shape else 0


def _shape_of(cap: Captured, node: OpNode) -> Callable[..., tuple[int, ...]]:
    """``shape(tensor)``: the shape of the node's output (``OUT``) or of an argument."""
    def shape(ref: Any, _node: OpNode | None = None) -> tuple[int, ...]:
        if ref == OUT:
            value = node.value[0] if isinstance(node.value, (list, tuple)) else node.value
            return tensor_shape(value) or ()
        found = cap.by_name.get(getattr(ref, "name", ""))
        return (tensor_shape(found.value) or ()) if found is not None else ()

    return shape


def node_macs(cap: Captured, n: OpNode) -> int:
    """MACs of one node, from the op table (0 for ops without compute)."""
    info = op_info(n.target)
    if info is None:
        return 0
    shape = _shape_of(cap, n)
    if info.count is not None:
        return info.count(shape, n)
    if info.terms is None:
        return 0
    total = 0
    for term in info.terms(n):
        shapes = [shape(ref) for ref, _ in term]
        if any(not s for s in shapes):
            continue  # a tensor of unknown shape: no MACs
        total += math.prod(x for s, (_, dims) in zip(shapes, term, strict=True) for x in s[dims])
    return total


def graph_macs(cap: Captured) -> int:
    return sum(node_macs(cap, n) for n in cap.nodes if n.kind == "call")


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def state_bytes(model: nn.Module) -> int:
    """Bytes of the model's state dict with tied tensors counted once: the size of its safetensors weights file,
    give or take the JSON header."""
    seen: set[int] = set()
    total = 0
    for t in model.state_dict(keep_vars=True).values():
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


def count(model: nn.Module, example_inputs: ExampleInputs) -> tuple[int, int]:
    """(multiply-accumulates of one forward pass on ``example_inputs``, number of parameters)."""
    return graph_macs(capture(model, example_inputs)), param_count(model)
