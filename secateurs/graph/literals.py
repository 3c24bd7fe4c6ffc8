"""Sizes baked into a captured graph as literal op arguments, tied to the index spaces they measure.

An eager module recomputes the sizes its ``view``/``reshape``/``split`` calls use from attributes that
surgery handlers refresh (``num_heads``, ``groups``). A graph from ``torch.export`` (a ``.pt2`` file) has
no such attributes: ``view(x, [197, 12, 64])`` carries the sizes as constants. Each :class:`Literal`
ties one such argument to the spaces whose sizes it holds, so a plan can state the argument's value
after pruning and surgery can rewrite the graph (``secateurs.surgery.graph_literals``).

A literal element is ``(space, multiple)``: its value is ``multiple * size(space)`` (slice bounds of the
k-th equal piece are ``k * piece``); ``None`` keeps the element as written (``-1`` in a view).
Finders are registered per op, one small function each, like coupling rules.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from secateurs.graph.capture import Captured, OpNode
from secateurs.registry import Registry

Term = tuple[int, int] | None


@dataclass(frozen=True)
class Literal:
    node: str
    op: str  # the node's target, checked again before a rewrite
    key: str  # "args.1" or "kwargs.size"
    terms: tuple[Term, ...]
    scalar: bool = False  # one int rather than a list
    retarget: str | None = None  # op to switch to when the value changes (split/chunk -> split_with_sizes)

    def value(self, size: Callable[[int], int], old: Any) -> Any:
        """The argument's value with each space at ``size(space)``; ``old`` supplies the kept elements."""
        olds = [old] if self.scalar else list(old) if isinstance(old, (list, tuple)) else [old] * len(self.terms)
        out = [o if t is None else t[1] * size(t[0]) for t, o in zip(self.terms, olds, strict=False)]
        return out[0] if self.scalar else out


Spaces = dict[str, list[list[int]]]
Hints = dict[str, dict[str, tuple[int, ...]]]  # node -> hint name -> spaces


@dataclass
class FindContext:
    """What a finder reads: every node's spaces, the spaces rules recorded as hints, and each space's size."""

    spaces: Spaces
    hints: Hints
    sizes: Sequence[int]

    def out(self, node: OpNode, k: int = 0) -> list[int]:
        outs = self.spaces.get(node.name, [])
        return outs[k] if k < len(outs) else []

    def inp(self, node: OpNode, i: int = 0) -> list[int]:
        ref = node.args[i] if i < len(node.args) else None
        outs = self.spaces.get(getattr(ref, "name", ""), [])
        return outs[0] if outs else []


Finder = Callable[[OpNode, FindContext], list[Literal]]
FINDERS: Registry[Finder] = Registry("literal finder")
finds = FINDERS.register


def finder_for(op: str) -> Finder | None:
    """The finder registered for an op name with or without its overload (``aten.view.default``)."""
    return FINDERS.find(op_packet(op)) or FINDERS.find(op)


def op_packet(target: str) -> str:
    """``aten.view.default`` -> ``aten.view`` (names without an overload are returned as they are)."""
    return target.rsplit(".", 1)[0] if target.count(".") >= 2 else target


def _key(node: OpNode, index: int, name: str) -> str | None:
    if index < len(node.args):
        return f"args.{index}"
    return f"kwargs.{name}" if name in node.kwargs else None


def _get(node: OpNode, key: str) -> Any:
    kind, _, where = key.partition(".")
    return node.args[int(where)] if kind == "args" else node.kwargs[where]


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _per_dim(node: OpNode, key: str, dims: Sequence[int]) -> list[Literal]:
    values = _get(node, key)
    if not isinstance(values, (list, tuple)) or len(values) != len(dims):
        return []
    terms = tuple(None if _int(v) is None or v == -1 else (s, 1) for v, s in zip(values, dims, strict=True))
    return [Literal(node.name, node.target, key, terms)] if any(terms) else []


def _norm(d: int, n: int) -> int:
    return d + n if d < 0 else d


@finds("aten.view", "aten.reshape", "aten._unsafe_view", "aten.expand", "aten.broadcast_to")
def _shape_arg(node: OpNode, ctx: FindContext) -> list[Literal]:
    key = _key(node, 1, "size") or _key(node, 1, "shape")
    return _per_dim(node, key, ctx.out(node)) if key else []


@finds("aten.zeros", "aten.ones", "aten.full", "aten.empty", "aten.rand", "aten.randn")
def _created_size(node: OpNode, ctx: FindContext) -> list[Literal]:
    """``torch.zeros(tokens, self.num_experts)``: the size measures the output (frozen dims, but one a plan changes
    with another group, like the experts a Python loop counts, must follow)."""
    key = _key(node, 0, "size")
    return _per_dim(node, key, ctx.out(node)) if key else []


@finds("aten.one_hot")
def _one_hot_classes(node: OpNode, ctx: FindContext) -> list[Literal]:
    """``one_hot(ids, num_classes)``: the classes are the output's last dim (experts, when ids are expert ids)."""
    key, out = _key(node, 1, "num_classes"), ctx.out(node)
    if key is None or _int(_get(node, key)) is None or _get(node, key) < 0 or not out:
        return []
    return [Literal(node.name, node.target, key, ((out[-1], 1),), scalar=True)]


@finds("aten.new_empty")
def _new_empty_size(node: OpNode, ctx: FindContext) -> list[Literal]:
    """``template.new_empty(size)``: the size measures the output (dims tied to the template's by the rule)."""
    key = _key(node, 1, "size")
    return _per_dim(node, key, ctx.out(node)) if key else []


@finds("aten.unflatten")
def _unflatten(node: OpNode, ctx: FindContext) -> list[Literal]:
    out, sizes = ctx.out(node), node.args[2] if len(node.args) > 2 else node.kwargs.get("sizes")
    if not isinstance(sizes, (list, tuple)):
        return []
    d = _norm(int(node.args[1]), len(out) - len(sizes) + 1)
    return _per_dim(node, _key(node, 2, "sizes") or "args.2", out[d : d + len(sizes)])


@finds("aten.layer_norm", "aten.native_layer_norm", "aten.rms_norm")
def _normalized_shape(node: OpNode, ctx: FindContext) -> list[Literal]:
    xs, shape = ctx.inp(node), node.args[1]
    return _per_dim(node, "args.1", xs[len(xs) - len(shape) :]) if isinstance(shape, (list, tuple)) else []


def _from_hint(node: OpNode, ctx: FindContext, hint: str, index: int, name: str) -> list[Literal]:
    spaces = ctx.hints.get(node.name, {}).get(hint)
    key = _key(node, index, name)
    if not spaces or key is None or _int(_get(node, key)) is None:
        return []
    return [Literal(node.name, node.target, key, ((spaces[0], 1),), scalar=True)]


@finds("aten.conv1d", "aten.conv2d", "aten.conv3d", "aten.conv_transpose1d", "aten.conv_transpose2d",
       "aten.conv_transpose3d")
def _conv_groups(node: OpNode, ctx: FindContext) -> list[Literal]:
    return _from_hint(node, ctx, "groups", 6, "groups")


@finds("aten.convolution", "aten._convolution")
def _convolution_groups(node: OpNode, ctx: FindContext) -> list[Literal]:
    return _from_hint(node, ctx, "groups", 8, "groups")


@finds("aten.group_norm")
def _num_groups(node: OpNode, ctx: FindContext) -> list[Literal]:
    return _from_hint(node, ctx, "num_groups", 1, "num_groups")


@finds("aten.split_with_sizes", "aten.split", "aten.chunk", "aten.unsafe_split")
def _split(node: OpNode, ctx: FindContext) -> list[Literal]:
    xs, outs = ctx.inp(node), ctx.spaces.get(node.name, [])
    if not xs or not outs:
        return []
    dim = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0)
    d = _norm(int(dim), len(xs))
    retarget = None if op_packet(node.target) == "aten.split_with_sizes" else "aten.split_with_sizes.default"
    return [Literal(node.name, node.target, "args.1", tuple((o[d], 1) for o in outs), retarget=retarget)]


@finds("aten.slice")
def _slice(node: OpNode, ctx: FindContext) -> list[Literal]:
    """Bounds of the k-th of equal pieces (RoPE's rotate_half, fused q/k/v): ``[k * piece, (k + 1) * piece)``;
    a bound past the end (``x[..., half:]``) stays as written."""
    xs, out = ctx.inp(node), ctx.out(node)
    if not xs or not out or len(node.args) < 3:
        return []
    d = _norm(int(node.args[1]), len(xs))
    n, piece = ctx.sizes[xs[d]], ctx.sizes[out[d]]
    start = 0 if node.args[2] is None else _int(node.args[2])
    end = n if len(node.args) < 4 or node.args[3] is None else _int(node.args[3])
    step = node.args[4] if len(node.args) > 4 else 1
    if start is None or end is None or step != 1 or piece in (0, n):
        return []
    start, end = start + n if start < 0 else start, min(n, end + n if end < 0 else end)
    if start % piece or end - start != piece:
        return []
    k = start // piece
    found = [Literal(node.name, node.target, "args.2", ((out[d], k),), scalar=True)]
    written = _int(node.args[3]) if len(node.args) > 3 and node.args[3] is not None else None
    if written is not None and 0 <= written < n:
        found.append(Literal(node.name, node.target, "args.3", ((out[d], k + 1),), scalar=True))
    elif written is not None and written < 0 and n % piece == 0:  # counted from the end: the pieces after it
        found.append(Literal(node.name, node.target, "args.3", ((out[d], -(n // piece - k - 1)),), scalar=True))
    # a negative end before rows that are not pieces of this size (``logits[..., :-shared]``) stays as written
    return found


@finds("aten.repeat_interleave")
def _repeat_output_size(node: OpNode, ctx: FindContext) -> list[Literal]:
    key = _key(node, 3, "output_size")
    out = ctx.out(node)
    dim = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim")
    if key is None or _int(_get(node, key)) is None or dim is None or not out:
        return []
    return [Literal(node.name, node.target, key, ((out[_norm(int(dim), len(out))], 1),), scalar=True)]


def find_literals(captured: Captured, spaces: Spaces, node_hints: Sequence[tuple[str, str, tuple[int, ...]]],
                  sizes: Sequence[int]) -> list[Literal]:
    """Every literal size argument of the graph's nodes, those inlined from sub-graphs included."""
    hints: Hints = {}
    for name, hint, hint_spaces in node_hints:
        hints.setdefault(name, {})[hint] = hint_spaces
    ctx = FindContext(spaces, hints, sizes)
    found: list[Literal] = []
    for node in captured.nodes:
        finder = finder_for(node.target) if node.kind == "call" else None
        if finder is not None:
            found.extend(finder(node, ctx))
    return found
