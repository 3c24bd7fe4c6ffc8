"""Convolutions (plain, grouped, depthwise, transposed) in 1, 2 and 3 dimensions."""

from __future__ import annotations

from secateurs.graph.context import RuleContext
from secateurs.graph.rules import register
from secateurs.graph.rules._common import contraction


def _conv(ctx: RuleContext, transposed: bool, groups: int) -> None:
    x, w, b = ctx.arg(0), ctx.arg(1), ctx.arg(2, "bias")
    xs, ws, out = ctx.spaces(x), ctx.spaces(w), ctx.out()
    spatial = len(ws) - 2
    batched = len(xs) == spatial + 2
    cx = 1 if batched else 0
    if batched:
        ctx.same(xs[0], out[0])
    ctx.freeze_all(xs[cx + 1 :], "spatial dimension of a convolution")
    ctx.freeze_all(out[cx + 1 :], "spatial dimension of a convolution")
    ctx.freeze_all(ws[2:], "kernel dimension")
    # weight layout: conv [Cout, Cin/g, k...]; transposed conv [Cin, Cout/g, k...]
    w_in, w_out = (ws[0], ws[1]) if transposed else (ws[1], ws[0])
    c_in, c_out = xs[cx], out[cx]
    if groups == 1:
        ctx.same(c_in, ws[0] if transposed else ws[1])
        ctx.same(c_out, ws[1] if transposed else ws[0])
    else:
        g = ctx.rel.new_space(groups, (ctx.node.name, -1, 0))
        ctx.hint("groups", g)
        ctx.tag(g, "conv_groups")  # selection prefers keeping the group count (see algorithms/overlap.py)
        if transposed:
            ctx.same(c_in, w_in)
            in_inner = ctx.rel.new_space(ctx.size(c_in) // groups, (ctx.node.name, -1, 1))
            ctx.product(c_in, [g, in_inner])
            ctx.product(c_out, [g, w_out])
        else:
            ctx.same(c_out, w_out)
            out_inner = ctx.rel.new_space(ctx.size(c_out) // groups, (ctx.node.name, -1, 1))
            ctx.product(c_in, [g, w_in])
            ctx.product(c_out, [g, out_inner])
    if b is not None:
        ctx.same(ctx.spaces(b)[0], c_out)
    contraction(ctx, [[c_in, ws[0] if transposed else ws[1]]], ctx.node.target)
    # an output channel is zero where the weight slices that make it are (and the bias, when there is one)
    ctx.carry([ws[0], ws[1]] + ([ctx.spaces(b)[0]] if b is not None else []), c_out)
    if batched and b is None:
        ctx.carry(xs[0], out[0])


@register("aten.conv1d", "aten.conv2d", "aten.conv3d")
def conv(ctx: RuleContext) -> None:
    _conv(ctx, transposed=False, groups=int(ctx.arg(6, "groups", 1)))


@register("aten.conv_transpose1d", "aten.conv_transpose2d", "aten.conv_transpose3d")
def conv_transpose(ctx: RuleContext) -> None:
    _conv(ctx, transposed=True, groups=int(ctx.arg(6, "groups", 1)))


@register("aten.convolution", "aten._convolution")
def convolution(ctx: RuleContext) -> None:
    _conv(ctx, transposed=bool(ctx.arg(6, "transposed", False)), groups=int(ctx.arg(8, "groups", 1)))


@register("aten.pixel_shuffle", "aten.pixel_unshuffle")
def pixel_shuffle(ctx: RuleContext) -> None:
    x = ctx.arg(0)
    r = int(ctx.arg(1))
    xs, out = ctx.spaces(x), ctx.out()
    lead = len(xs) - 3
    ctx.same_all(xs[:lead], out[:lead])
    ctx.freeze_all(xs[lead + 1 :], "spatial dimension of a pixel shuffle")
    ctx.freeze_all(out[lead + 1 :], "spatial dimension of a pixel shuffle")
    big, small = (xs[lead], out[lead]) if ctx.node.target.startswith("aten.pixel_shuffle") else (out[lead], xs[lead])
    r1 = ctx.rel.new_space(r, (ctx.node.name, -1, 0))
    r2 = ctx.rel.new_space(r, (ctx.node.name, -1, 1))
    ctx.freeze_all([r1, r2], "pixel shuffle factor")
    ctx.product(big, [small, r1, r2])
    ctx.carry_all(xs[:lead], out[:lead])
    ctx.carry(xs[lead], out[lead])
