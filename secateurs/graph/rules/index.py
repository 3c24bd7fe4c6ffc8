"""Indexing with tensors: indexed dims are positional (frozen); the other dims pass through."""

from __future__ import annotations

from secateurs.graph.capture import Ref
from secateurs.graph.context import RuleContext
from secateurs.graph.rules import register
from secateurs.graph.rules._common import broadcast_into, norm_dim


@register("aten.index.Tensor", "aten._unsafe_index.Tensor")
def index(ctx: RuleContext) -> None:
    x = ctx.arg(0)
    xs, out = list(ctx.spaces(x)), list(ctx.out())
    indices = list(ctx.arg(1))
    positions = [i for i, t in enumerate(indices) if t is not None]
    for p in positions:
        ctx.freeze(xs[p], "dimension indexed by a tensor of positions")
    idx_refs = [t for t in indices if isinstance(t, Ref)]
    n_idx = max((len(ctx.spaces(t)) for t in idx_refs), default=0)
    contiguous = positions == list(range(positions[0], positions[-1] + 1)) if positions else True
    first = positions[0] if positions and contiguous else 0
    idx_out = out[first : first + n_idx]
    for t in idx_refs:
        broadcast_into(ctx, t, idx_out)
    rest_x = [s for i, s in enumerate(xs) if i not in positions]
    rest_out = out[:first] + out[first + n_idx :]
    ctx.same_all(rest_x, rest_out)
    ctx.carry_all(rest_x, rest_out)
    ctx.mention(*out)


@register("aten.index_select")
def index_select(ctx: RuleContext) -> None:
    xs, out = list(ctx.spaces(ctx.arg(0))), list(ctx.out())
    d = norm_dim(int(ctx.arg(1)), len(xs))
    ctx.freeze(xs[d], "dimension indexed by a tensor of positions")
    ctx.same(ctx.spaces(ctx.arg(2))[0], out[d])
    for i, (s, o) in enumerate(zip(xs, out, strict=True)):
        if i != d:
            ctx.same(s, o)
            ctx.carry(s, o)


@register("aten.gather", "aten.take_along_dim")
def gather(ctx: RuleContext) -> None:
    xs, out = list(ctx.spaces(ctx.arg(0))), list(ctx.out())
    along = ctx.node.target.startswith("aten.take_along_dim")  # take_along_dim(input, indices, dim)
    dim, index = (ctx.arg(2, "dim"), ctx.arg(1)) if along else (ctx.arg(1), ctx.arg(2))
    if dim is None:  # positions into the flattened input
        ctx.freeze_all(xs + out + list(ctx.spaces(index)), "gather from a flattened tensor")
        return
    d = norm_dim(int(dim), len(xs))
    idx = list(ctx.spaces(index))
    ctx.freeze(xs[d], "dimension gathered by a tensor of positions")
    ctx.same_all(idx, out)
    for i, (s, o) in enumerate(zip(xs, out, strict=True)):
        if i != d:
            if ctx.size(s) == ctx.size(o):
                ctx.same(s, o)
                ctx.carry(s, o)
            else:
                ctx.freeze(s, "gather over a larger source dimension")


@register("aten.scatter", "aten.scatter_add", "aten.scatter_reduce")
def scatter(ctx: RuleContext) -> None:
    """``out = self.scatter(dim, index, src)``: ``out`` has the dims of ``self``; along ``dim`` the positions written
    are data (frozen). Off ``dim``, ``index`` and ``src`` address the same positions as ``self`` where their sizes
    match (a router writing its top-k scores into a dense ``[tokens, experts]`` matrix)."""
    xs, out = list(ctx.spaces(ctx.arg(0))), list(ctx.out())
    d = norm_dim(int(ctx.arg(1, "dim")), len(xs))
    ctx.same_all(xs, out)
    ctx.freeze(xs[d], "dimension written at positions held in a tensor (scatter)")
    for ref in (ctx.arg(2, "index"), ctx.arg(3, "src")):
        if not ctx.is_tensor_ref(ref):
            continue
        spaces = list(ctx.spaces(ref))
        if len(spaces) != len(xs):
            ctx.freeze_all(spaces, "scatter operand of another rank")
            continue
        for i, (s, o) in enumerate(zip(spaces, out, strict=True)):
            if i != d and ctx.size(s) == ctx.size(o):
                ctx.same(s, o)
            else:
                ctx.freeze(s, "positions of a scatter")
