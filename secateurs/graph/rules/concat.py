"""Concatenation, stacking and splitting: cat, stack, split, chunk, unbind, slice, select, narrow."""

from __future__ import annotations

import sys

import numpy as np

from secateurs.graph.capture import OpNode, Ref
from secateurs.graph.context import RuleContext
from secateurs.graph.rules import register
from secateurs.graph.rules._common import keep_other_dims, norm_dim
from secateurs.registry import Registry


@register("aten.cat", "aten.concat", "aten.concatenate")
def cat(ctx: RuleContext) -> None:
    tensors = [t for t in ctx.arg(0) if isinstance(t, Ref)]
    out = ctx.out()
    d = norm_dim(int(ctx.arg(1, "dim", 0)), len(out))
    offset = 0
    parts = []
    for t in tensors:
        ts = ctx.spaces(t)
        if len(ts) != len(out):  # legacy empty 1-d tensors in cat
            ctx.mention(*ts)
            continue
        keep_other_dims(ctx, ts, out, {d}, {d}, carry=False)
        n = ctx.size(ts[d])
        ctx.link(ts[d], np.arange(n), out[d], offset + np.arange(n))
        offset += n
        parts.append(ts)
    ctx.mention(out[d])
    for i, o in enumerate(out):  # zero where every piece is zero
        ctx.carry([ts[i] for ts in parts], o)


@register("aten.stack")
def stack(ctx: RuleContext) -> None:
    tensors = [t for t in ctx.arg(0) if isinstance(t, Ref)]
    out = ctx.out()
    d = norm_dim(int(ctx.arg(1, "dim", 0)), len(out))
    ctx.freeze(out[d], "stacking dimension")
    for t in tensors:
        keep_other_dims(ctx, ctx.spaces(t), out, set(), {d}, carry=False)
    rest = [o for i, o in enumerate(out) if i != d]
    for i, o in enumerate(rest):
        ctx.carry([ctx.spaces(t)[i] for t in tensors], o)


def _pieces(ctx: RuleContext, src: Ref, d: int, sizes: list[int], outputs: list[list[int]]) -> None:
    """Relate the input of a split to its pieces. Equal pieces are balanced (chunk semantics)."""
    xs = ctx.spaces(src)
    for piece in outputs:
        keep_other_dims(ctx, xs, piece, {d}, {d})
    for piece in outputs:
        ctx.carry(xs[d], piece[d])
    if len(sizes) == 1:
        ctx.same(xs[d], outputs[0][d])
        return
    if len(set(sizes)) == 1:
        n_pieces = ctx.rel.new_space(len(sizes), (ctx.node.name, -1, 0))
        inner = ctx.rel.new_space(sizes[0], (ctx.node.name, -1, 1))
        ctx.freeze(n_pieces, "number of equal pieces of a split")
        ctx.product(xs[d], [n_pieces, inner])
        for piece in outputs:
            ctx.same(piece[d], inner)
        return
    ctx.freeze(xs[d], "split into unequal pieces whose sizes are constants of the graph")
    for piece in outputs:
        ctx.freeze(piece[d], "unequal split piece")


@register("aten.split", "aten.split_with_sizes", "aten.chunk", "aten.unsafe_split")
def split(ctx: RuleContext) -> None:
    src = ctx.arg(0)
    xs = ctx.spaces(src)
    d = norm_dim(int(ctx.arg(2, "dim", 0)), len(xs))
    outputs = [ctx.out(k) for k in range(ctx.n_outputs())]
    sizes = [ctx.size(o[d]) for o in outputs]
    _pieces(ctx, src, d, sizes, outputs)


@register("aten.unbind")
def unbind(ctx: RuleContext) -> None:
    src = ctx.arg(0)
    xs = ctx.spaces(src)
    d = norm_dim(int(ctx.arg(1, "dim", 0)), len(xs))
    ctx.freeze(xs[d], "unbound dimension")
    for k in range(ctx.n_outputs()):
        keep_other_dims(ctx, xs, ctx.out(k), {d}, set())


@register("aten.select")
def select(ctx: RuleContext) -> None:
    xs = ctx.spaces(ctx.arg(0))
    d = norm_dim(int(ctx.arg(1)), len(xs))
    ctx.freeze(xs[d], "select picks a position by a constant index")
    keep_other_dims(ctx, xs, ctx.out(), {d}, set())


def _slice_bounds(node: OpNode, n: int) -> tuple[int, int, int]:
    start = node.args[2] if len(node.args) > 2 and node.args[2] is not None else 0
    end = node.args[3] if len(node.args) > 3 and node.args[3] is not None else sys.maxsize
    step = node.args[4] if len(node.args) > 4 else 1
    start, end = int(start), int(end)
    start = max(0, start + n if start < 0 else start)
    end = min(n, end + n if end < 0 else end)
    return start, max(start, end), int(step)


@register("aten.slice")
def slice_(ctx: RuleContext) -> None:
    src = ctx.arg(0)
    xs, out = ctx.spaces(src), ctx.out()
    d = norm_dim(int(ctx.arg(1, "dim", 0)), len(xs))
    keep_other_dims(ctx, xs, out, {d}, {d})
    ctx.carry(xs[d], out[d])
    n = ctx.size(xs[d])
    start, end, step = _slice_bounds(ctx.node, n)
    if start == 0 and end == n and step == 1:
        ctx.same(xs[d], out[d])
        return
    siblings = _sibling_slices(ctx, src, d, len(xs))
    if step > 1 and _interleaved(ctx, src, d, n, step, siblings):
        return
    ranges = sorted(_slice_bounds(s, n)[:2] for s in siblings)
    tiles = all(_slice_bounds(s, n)[2] == 1 for s in siblings) and ranges and ranges[0][0] == 0 and ranges[-1][1] == n
    tiles = tiles and all(ranges[k][1] == ranges[k + 1][0] for k in range(len(ranges) - 1))
    sizes = {e - s for s, e in ranges}
    if tiles and len(sizes) == 1 and step == 1:
        # A balanced partition (rotate_half in RoPE, q/k/v of equal width): remove units evenly.
        key = ("slice-partition", src.name, d)
        inner = ctx.rel.shared.get(key)
        if inner is None:
            parts = ctx.rel.new_space(len(ranges), (ctx.node.name, -1, 0))
            inner = ctx.rel.new_space(sizes.pop(), (ctx.node.name, -1, 1))
            ctx.freeze(parts, "number of equal pieces of a slice partition")
            ctx.product(xs[d], [parts, inner])
            ctx.rel.shared[key] = inner
        ctx.mention(xs[d])  # related to ``inner`` by the first sibling slice
        ctx.same(out[d], inner)
        return
    if tiles and step == 1 and ctx.node.module_type in SLICE_REFRESHERS:
        # unequal pieces (fused q/k/v of GQA) in a module whose forward recomputes the bounds from attributes
        # that its surgery handler refreshes: each piece is its range of the source, element by element
        ctx.link(out[d], np.arange(end - start), xs[d], start + np.arange(end - start))
        ctx.mention(xs[d])
        return
    ctx.freeze(xs[d], "slice with constant bounds that do not split the dimension into equal parts")
    ctx.freeze(out[d], "slice with constant bounds")


def _interleaved(ctx: RuleContext, src: Ref, d: int, n: int, step: int, siblings: list[OpNode]) -> bool:
    """``x[..., 0::k]``, ..., ``x[..., k-1::k]`` (GPT-OSS's interleaved gate/up): ``dim = width x k`` with the
    pieces as the inner, frozen factor, so a unit removes the same row of every piece."""
    bounds = [_slice_bounds(s, n) for s in siblings]
    if n % step or sorted({b[0] for b in bounds}) != list(range(step)) or any(b[2] != step for b in bounds):
        return False
    key = ("slice-interleave", src.name, d)
    inner = ctx.rel.shared.get(key)
    if inner is None:
        inner = ctx.rel.new_space(n // step, (ctx.node.name, -1, 0))
        parts = ctx.rel.new_space(step, (ctx.node.name, -1, 1))
        ctx.freeze(parts, "number of interleaved pieces of a strided slice partition")
        ctx.product(ctx.spaces(src)[d], [inner, parts])
        ctx.rel.shared[key] = inner
    ctx.mention(ctx.spaces(src)[d])
    ctx.same(ctx.out()[d], inner)
    return True


#: class names of modules whose forward computes slice bounds from attributes a surgery handler refreshes
#: class names (as the graph records them) whose forward recomputes its slice bounds from refreshed attributes
SLICE_REFRESHERS: Registry[str] = Registry("slice-refreshing module")


def refreshes_slice_bounds(*type_names: str) -> None:
    """Declare that modules of these classes recompute the bounds of their slices after pruning (e.g. Phi-3's
    ``qkv[..., :num_heads * head_dim]``), so unequal slices that tile a dimension are linked, not frozen.
    Integrations call this when imported; their surgery handler must refresh the attributes the bounds use."""
    for name in type_names:
        SLICE_REFRESHERS.add(name, name)


def _sibling_slices(ctx: RuleContext, src: Ref, d: int, ndim: int) -> list[OpNode]:
    users = ctx.users(src)
    return [
        u for u in users
        if u.target.startswith("aten.slice") and u.args and u.args[0] == src
        and norm_dim(int(u.args[1] if len(u.args) > 1 else 0), ndim) == d
    ]


@register("aten.narrow")
def narrow(ctx: RuleContext) -> None:
    xs, out = ctx.spaces(ctx.arg(0)), ctx.out()
    d = norm_dim(int(ctx.arg(1)), len(xs))
    keep_other_dims(ctx, xs, out, {d}, {d})
    ctx.carry(xs[d], out[d])
    if ctx.size(xs[d]) == ctx.size(out[d]):
        ctx.same(xs[d], out[d])
    else:
        ctx.freeze_all([xs[d], out[d]], "narrow with constant bounds")


@register("getitem")
def getitem(ctx: RuleContext) -> None:
    src, index = ctx.arg(0), int(ctx.arg(1))
    ctx.same_all(ctx.spaces(src, index), ctx.out())
    ctx.carry_all(ctx.spaces(src, index), ctx.out())
    # the rule engine lists output 0 of the tuple among this node's inputs; the getitem that reads it maps it
    ctx.mention(*ctx.out(), *ctx.spaces(src))


@register("secateurs.tuple")
def tuple_(ctx: RuleContext) -> None:
    for k, item in enumerate(ctx.node.args):
        if isinstance(item, Ref):
            ctx.same_all(ctx.spaces(item), ctx.out(k))
            ctx.carry_all(ctx.spaces(item), ctx.out(k))
