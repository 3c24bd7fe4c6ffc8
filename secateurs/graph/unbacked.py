"""Sizes that depend on the input values (unbacked symbols), resolved to what the example inputs gave.

A mixture-of-experts layer that gathers the tokens of each expert (``nonzero``, ``torch.where``, ``split`` with
``tolist()`` sizes) makes tensors whose sizes torch.export writes as unbacked symbols (``u0``). Coupling needs
static sizes, so such a forward() is captured with ``torch.export.draft_export`` (real tensors propagated beside
the fake ones), which records the value each symbol took on the example inputs. ``settle_`` then writes those
values into the captured graph and lists every dimension whose size came from one: coupling freezes them, so a
count of tokens is never pruned as a channel.

Every read of the ShapeEnv internals this needs lives here (version-dependent, like ``meta.py`` for node.meta).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any
from unittest import mock

import torch

#: a dimension of a captured node: (node name, output index, dim)
Dim = tuple[str, int, int]


def free_unbacked(value: Any) -> bool:
    """Whether a node value (tensor, scalar or tuple of them) has a size or value that depends on the data."""
    from torch.fx.experimental.symbolic_shapes import free_unbacked_symbols

    try:
        return bool(free_unbacked_symbols(value))
    except Exception:  # a value type the walker does not know: nothing symbolic we can read
        return False


def graph_has_unbacked(ep: Any) -> bool:
    """Whether any tensor of an exported program has a size that depends on the input values."""
    return any(_tensors_unbacked(n.meta.get("val")) for n in ep.graph.nodes)


def _tensors_unbacked(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return any(_tensors_unbacked(v) for v in value)
    return isinstance(value, torch.Tensor) and free_unbacked(tuple(value.shape))


@contextlib.contextmanager
def keep_unbacked() -> Iterator[None]:
    """For ``draft_export``: keep unbacked symbols in the graph instead of replacing them by the example's values
    (so ``settle_`` can tell which sizes came from the data), and skip the storage-offset check of real-tensor
    propagation, which guards on an unbacked offset (``torch.where`` outputs) and fails the capture."""
    from torch._subclasses import fake_utils
    from torch.fx.experimental import symbolic_shapes as ss
    from torch.utils._sympy.symbol import SymT, symbol_is_type

    set_replacement = getattr(ss.ShapeEnv, "_set_replacement", None)
    check = getattr(fake_utils, "_check_fake_real_tensors", None)
    with contextlib.ExitStack() as stack:
        if set_replacement is not None:
            def keep(self: Any, a: Any, tgt: Any, msg: str) -> None:
                if not symbol_is_type(a, SymT.UNBACKED_INT):
                    set_replacement(self, a, tgt, msg)

            stack.enter_context(mock.patch.object(ss.ShapeEnv, "_set_replacement", keep))
        if check is not None:
            def tolerant(*args: Any, **kwargs: Any) -> None:
                # the storage offset of a data-sized view cannot be compared; its sizes are checked elsewhere
                with contextlib.suppress(ss.GuardOnDataDependentSymNode):
                    check(*args, **kwargs)

            stack.enter_context(mock.patch.object(fake_utils, "_check_fake_real_tensors", tolerant))
        yield


def example_values(ep: Any) -> dict[Any, int]:
    """unbacked symbol -> the value it took on the example inputs (empty when the capture did not record them)."""
    for node in ep.graph.nodes:
        env = _shape_env(node.meta.get("val"))
        if env is not None:
            found = getattr(env, "real_tensor_prop_unbacked_vals", None) or {}
            return {s: int(v) for s, v in found.items() if getattr(s, "is_Symbol", False) and _is_int(v)}
    return {}


def _is_int(v: Any) -> bool:
    try:
        int(v)
    except (TypeError, ValueError):
        return False
    return not isinstance(v, bool)


def _shape_env(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        for v in value:
            env = _shape_env(v)
            if env is not None:
                return env
        return None
    if isinstance(value, torch.Tensor):
        value = next((s for s in value.shape if isinstance(s, torch.SymInt)), None)
    if isinstance(value, (torch.SymInt, torch.SymBool, torch.SymFloat)):
        return value.node.shape_env
    return None


def settle(value: Any, values: dict[Any, int]) -> tuple[Any, list[tuple[int, int]], bool]:
    """``value`` with every data-dependent size replaced by its example value (a meta tensor of that shape, an
    int), the (output index, dim) pairs whose size came from the data, and whether every symbol was resolved."""
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    out: list[Any] = []
    dims: list[tuple[int, int]] = []
    ok = True
    for k, item in enumerate(items):
        if isinstance(item, torch.Tensor) and free_unbacked(tuple(item.shape)):
            shape = []
            for d, s in enumerate(item.shape):
                size = _resolve(s, values)
                if isinstance(s, torch.SymInt) and free_unbacked(s):
                    dims.append((k, d))
                ok = ok and size is not None
                shape.append(size if size is not None else 0)
            out.append(torch.empty(shape, dtype=item.dtype, device="meta"))
        elif isinstance(item, torch.SymInt) and free_unbacked(item):
            size = _resolve(item, values)
            out.append(size if size is not None else item)
        else:
            out.append(item)
    if not isinstance(value, (list, tuple)):
        return out[0], dims, ok
    return type(value)(out), dims, ok


def _resolve(size: Any, values: dict[Any, int]) -> int | None:
    if not isinstance(size, torch.SymInt):
        return int(size)
    import sympy

    expr = size.node.expr.xreplace({s: sympy.Integer(v) for s, v in values.items()})
    return int(expr) if getattr(expr, "is_number", False) else None
