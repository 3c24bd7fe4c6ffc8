"""Mixture-of-experts ops: grouped matrix products over stacked expert weights, expert histograms, index_put.

``grouped_mm(input [S, in], weight [E, in, out], offs [E])`` multiplies each run of rows of ``input`` by one
expert's matrix (transformers' ``grouped_mm_fallback`` custom op, ``torch._grouped_mm``): the feature dims are
those of a linear layer shared by every expert, so an FFN unit removes one intermediate neuron from every expert.
The expert dim ``E`` is joined with the offsets; which experts a token uses is data (router top-k indices), so
whole experts are units of their own, found by ``graph/experts.py``.
"""

from __future__ import annotations

from secateurs.graph.context import RuleContext
from secateurs.graph.rules import register


@register("transformers.grouped_mm_fallback", "aten._grouped_mm")
def grouped_mm(ctx: RuleContext) -> None:
    x, w = ctx.arg(0), ctx.arg(1)
    offs = ctx.arg(2, "offs")
    xs, ws, out = ctx.spaces(x), ctx.spaces(w), ctx.out()
    if len(xs) != 2 or len(ws) != 3 or len(out) != 2:
        ctx.freeze_all(xs + ws + out, "grouped matrix product of an unsupported layout")
        return
    ctx.same(xs[0], out[0])
    ctx.same(xs[1], ws[1])
    ctx.same(out[1], ws[2])
    if ctx.is_tensor_ref(offs):
        ctx.same(ctx.spaces(offs)[0], ws[0])
    else:
        ctx.freeze(ws[0], "experts of a grouped matrix product without offsets")


@register("aten.one_hot")
def one_hot(ctx: RuleContext) -> None:
    """``one_hot(ids, n)``: the ids' dims pass through; the new last dim has ``n`` classes (a size in the graph)."""
    xs, out = ctx.spaces(ctx.arg(0)), ctx.out()
    ctx.same_all(xs, out[:-1])
    ctx.freeze(out[-1], "classes of one_hot (a size written in the graph)")


@register("aten.histc")
def histogram(ctx: RuleContext) -> None:
    """Counts of values (expert ids per token): the input's positions and the bins are data, not channels."""
    for ref in ctx.tensor_refs():
        ctx.freeze_all(ctx.spaces(ref), f"values counted by {ctx.node.target}")
    ctx.freeze_all(ctx.out(), f"bins of {ctx.node.target} (a size written in the graph)")


@register("aten.index_put", "aten._index_put_impl")
def index_put(ctx: RuleContext) -> None:
    """``self[indices] = values``: the indexed dims are positions; the trailing dims of ``values`` are those of
    ``self`` after the indexed ones."""
    xs, out = ctx.spaces(ctx.arg(0)), ctx.out()
    indices = list(ctx.arg(1))
    ctx.same_all(xs, out)
    n = len(indices)
    ctx.freeze_all(xs[:n], "dimension indexed by a tensor of positions")
    for t in indices:
        if ctx.is_tensor_ref(t):
            ctx.freeze_all(ctx.spaces(t), "positions of an index_put")
    values = ctx.arg(2)
    if ctx.is_tensor_ref(values):
        vs, rest = ctx.spaces(values), xs[n:]
        tail = min(len(rest), len(vs))
        for v, s in zip(vs[len(vs) - tail:], rest[len(rest) - tail:], strict=True):
            if ctx.size(v) == ctx.size(s):
                ctx.same(v, s)
            else:
                ctx.freeze(v, "broadcast value of an index_put")
        ctx.freeze_all(vs[: len(vs) - tail], "positions of an index_put")
