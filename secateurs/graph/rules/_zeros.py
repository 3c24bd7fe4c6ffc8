"""Zero preservation of elementwise ops, found by running the op itself on a few values.

The masked original zeroes removed weight slices; whether the removed units of an activation are still zero
after an elementwise op is whether the op maps zero to zero: ``relu``, ``x * y``, ``x / y``, ``x > 0`` and a
cast do; ``sigmoid``, ``exp``, ``cos``, ``x + 1`` and ``x >= 0`` do not. Rather than a table per op, the op is
called (on CPU, with the node's own scalar arguments) with zeros for the operands that are zero at the removed
units and random values for the others (operands that are not zero there, or broadcast along the dimension):
the output must be exactly zero for every value drawn.
"""

from __future__ import annotations

from typing import Any

import torch

from secateurs.graph.capture import Ref
from secateurs.graph.context import RuleContext

_RANDOM_OPS = ("aten.empty", "aten.rand", "aten.randn", "aten.randint", "aten.normal", "aten.uniform")
_DROPPED_KWARGS = ("device", "pin_memory", "layout", "memory_format")
_CACHE: dict[tuple[Any, ...], bool] = {}


def _operator(target: str) -> Any:
    parts = target.split(".")
    if len(parts) != 3 or parts[0] != "aten":
        return None
    packet = getattr(torch.ops.aten, parts[1], None)
    return getattr(packet, parts[2], None) if packet is not None else None


def _sample(dtype: torch.dtype | None, zero: bool, g: torch.Generator) -> torch.Tensor:
    dtype = dtype or torch.float32
    if zero:
        return torch.zeros(8, dtype=dtype)
    if dtype == torch.bool:
        return torch.tensor([True, False, True, True, False, True, False, True])
    if dtype.is_floating_point or dtype.is_complex:
        return (torch.randn(8, generator=g) * 2).to(dtype)
    return torch.tensor([3, -2, 1, 5, -7, 2, 4, -1]).to(dtype)


def maps_zero(ctx: RuleContext, zero_refs: set[Ref]) -> bool:
    """Whether this node's op returns exactly zero when the operands in ``zero_refs`` are zero, whatever the
    other tensor operands hold. False when the op cannot be run on CPU samples (the safe answer)."""
    target = ctx.node.target
    if target.startswith(_RANDOM_OPS) or target.startswith(("aten.empty_like", "aten.rand_like", "aten.randn_like")):
        return False
    op = _operator(target)
    if op is None:
        return False
    refs = list(ctx.tensor_refs())
    kwargs = {k: v for k, v in ctx.node.kwargs.items() if k not in _DROPPED_KWARGS}
    key = (target, _scalars(ctx.node.args), _scalars(kwargs), tuple((r in zero_refs, ctx.dtype(r)) for r in refs))
    if key not in _CACHE:
        _CACHE[key] = _run(op, ctx, zero_refs, kwargs)
    return _CACHE[key]


def _scalars(value: Any) -> str:
    """The non-tensor part of an argument list, as a cache key (tensor operands appear as 'T')."""
    if isinstance(value, Ref):
        return "T"
    if isinstance(value, (list, tuple)):
        return "(" + ",".join(_scalars(v) for v in value) + ")"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_scalars(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _run(op: Any, ctx: RuleContext, zero_refs: set[Ref], kwargs: dict[str, Any]) -> bool:
    for seed in (0, 1, 2):
        g = torch.Generator().manual_seed(seed)

        def sub(v: Any, g: torch.Generator = g) -> Any:
            if isinstance(v, Ref):
                return _sample(ctx.dtype(v), v in zero_refs, g)
            if isinstance(v, (list, tuple)):
                return type(v)(sub(x) for x in v)
            return v

        try:
            with torch.no_grad():
                out = op(*sub(tuple(ctx.node.args)), **{k: sub(v) for k, v in kwargs.items()})
        except Exception:
            return False
        if isinstance(out, (list, tuple)):
            out = out[0] if out else None
        if not isinstance(out, torch.Tensor) or not bool((out == 0).all()):
            return False
    return True


def elementwise_zeros(ctx: RuleContext) -> None:
    """Record which output dims of an elementwise node keep removed units zero. For output dim ``j``, the
    operands indexed by ``j`` (aligned from the right, same size) that are zero there are zeroed; all other
    operand values are arbitrary."""
    out = ctx.out()
    refs = list(ctx.tensor_refs())
    for j, o in enumerate(out):
        zero_refs = set()
        for ref in refs:
            spaces = ctx.spaces(ref)
            i = j - (len(out) - len(spaces))
            if 0 <= i < len(spaces) and ctx.size(spaces[i]) == ctx.size(o) and ctx.is_zero(spaces[i]):
                zero_refs.add(ref)
        if maps_zero(ctx, zero_refs):
            ctx.zero(o)
