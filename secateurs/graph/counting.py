"""MACs and parameter counts that follow the captured graph."""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import nn

from secateurs.graph.capture import Captured, ExampleInputs, OpNode, capture
from secateurs.graph.meta import tensor_shape


def _numel(shape: tuple[int, ...] | None) -> int:
    return math.prod(shape) if shape else 0


def _shape(cap: Captured, ref: object) -> tuple[int, ...]:
    node = cap.by_name.get(getattr(ref, "name", ""))
    return (tensor_shape(node.value) or ()) if node is not None else ()


def _conv(cap: Captured, n: OpNode) -> int:
    w = _shape(cap, n.args[1])
    return _numel(tensor_shape(n.value)) * math.prod(w[1:]) if w else 0


def _conv_t(cap: Captured, n: OpNode) -> int:
    w = _shape(cap, n.args[1])
    return _numel(_shape(cap, n.args[0])) * math.prod(w[1:]) if w else 0


def _linear(cap: Captured, n: OpNode) -> int:
    return _numel(tensor_shape(n.value)) * _shape(cap, n.args[0])[-1]


def _matmul(cap: Captured, n: OpNode) -> int:
    a = _shape(cap, n.args[1] if n.target.startswith(("aten.addmm", "aten.baddbmm")) else n.args[0])
    return _numel(tensor_shape(n.value)) * (a[-1] if a else 1)


def _sdpa(cap: Captured, n: OpNode) -> int:
    q, k = _shape(cap, n.args[0]), _shape(cap, n.args[1])
    out = tensor_shape(n.value if not isinstance(n.value, (list, tuple)) else n.value[0]) or ()
    if not q or not k:
        return 0
    return _numel(q[:-1]) * k[-2] * q[-1] + _numel(out[:-1]) * k[-2] * out[-1]


def _einsum(cap: Captured, n: OpNode) -> int:
    sizes: dict[str, int] = {}
    terms = str(n.args[0]).replace(" ", "").split("->")[0].split(",")
    for term, op in zip(terms, n.args[1], strict=False):
        for letter, size in zip(term.replace("...", ""), _shape(cap, op)[-len(term.replace("...", "")):], strict=False):
            sizes[letter] = size
    batch = _numel(tensor_shape(n.value)) // max(1, math.prod(sizes[c] for c in str(n.args[0]).split("->")[-1].strip() if c in sizes))
    return batch * math.prod(sizes.values())


def _norm(cap: Captured, n: OpNode) -> int:
    value = n.value[0] if isinstance(n.value, (list, tuple)) else n.value
    return _numel(tensor_shape(value))


_MACS: dict[str, Callable[[Captured, OpNode], int]] = {
    "aten.conv1d": _conv, "aten.conv2d": _conv, "aten.conv3d": _conv,
    "aten.conv_transpose1d": _conv_t, "aten.conv_transpose2d": _conv_t, "aten.conv_transpose3d": _conv_t,
    "aten.linear": _linear, "aten.addmm": _matmul, "aten.mm": _matmul, "aten.bmm": _matmul,
    "aten.matmul": _matmul, "aten.baddbmm": _matmul, "aten.einsum": _einsum,
    "aten.scaled_dot_product_attention": _sdpa,
    "aten.batch_norm": _norm, "aten.layer_norm": _norm, "aten.group_norm": _norm, "aten.rms_norm": _norm,
    "aten.instance_norm": _norm,
}


def graph_macs(cap: Captured) -> int:
    total = 0
    for n in cap.nodes:
        if n.kind != "call":
            continue
        packet = n.target.rsplit(".", 1)[0] if n.target.count(".") >= 2 else n.target
        fn = _macs_for(packet)
        if fn is not None:
            total += fn(cap, n)
    return total


def _macs_for(packet: str) -> Callable[[Captured, OpNode], int] | None:
    if packet == "aten.convolution":
        return _conv
    return _MACS.get(packet)


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
