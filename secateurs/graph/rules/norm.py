"""Normalisation layers: batch/instance norm (exact per channel), layer/RMS/group norm (inexact)."""

from __future__ import annotations

from secateurs.graph.capture import Ref
from secateurs.graph.context import RuleContext
from secateurs.graph.rules import register


def _affine_zero(ctx: RuleContext, weight: object, bias: object, normalised: int, out: int) -> None:
    """``out = normalised * weight + bias`` per channel: zero where the weight is zero (or, without a weight,
    where the normalised input is), and the bias too."""
    def zero(p: object) -> bool:
        return isinstance(p, Ref) and bool(ctx.spaces(p)) and ctx.is_zero(ctx.spaces(p)[-1])

    scaled = zero(weight) if ctx.is_tensor_ref(weight) else ctx.is_zero(normalised)
    if scaled and (bias is None or zero(bias)):
        ctx.zero(out)


def _per_channel(ctx: RuleContext, param_args: list[int], exact: bool) -> None:
    x = ctx.arg(0)
    xs = ctx.spaces(x)
    out = ctx.out(0)
    ctx.same_all(xs, out)
    channel = xs[1] if len(xs) > 1 else xs[0]
    # (x - mean) / sqrt(var + eps): the statistics of a removed channel are zeroed buffers (batch norm) or its own
    # values (instance norm), so a zero input channel stays zero before the affine part
    out_channel = out[1] if len(out) > 1 else out[0]
    _affine_zero(ctx, ctx.arg(param_args[0]), ctx.arg(param_args[1]), channel, out_channel)
    for i in param_args:
        p = ctx.arg(i)
        if ctx.is_tensor_ref(p):
            ps = ctx.spaces(p)
            if ps and ctx.size(ps[0]) == ctx.size(channel):
                ctx.same(ps[0], channel)
            else:
                ctx.freeze_all(ps, "normalisation statistics of unexpected shape")
    for k in range(1, ctx.n_outputs()):  # saved mean / invstd of native variants
        extra = ctx.out(k)
        if len(extra) == 1 and ctx.size(extra[0]) == ctx.size(channel):
            ctx.same(extra[0], channel)
        else:
            ctx.freeze_all(extra, "normalisation statistics output")
    if not exact:
        ctx.inexact(channel, "normalisation over the dimension")


@register("aten.batch_norm", "aten._native_batch_norm_legit_no_training", "aten._native_batch_norm_legit",
          "aten.native_batch_norm", "aten._native_batch_norm_legit_functional", "aten.cudnn_batch_norm")
def batch_norm(ctx: RuleContext) -> None:
    _per_channel(ctx, [1, 2, 3, 4], exact=True)
    if ctx.arg(5, "training") is True:  # batch statistics (weight standardisation): the other dims are averaged over
        xs = ctx.spaces(ctx.arg(0))
        for s in xs[:1] + xs[2:]:
            ctx.inexact(s, "batch_norm with batch statistics normalises over the dimension")


@register("aten.instance_norm")
def instance_norm(ctx: RuleContext) -> None:
    _per_channel(ctx, [1, 2, 3, 4], exact=True)


def _last_dims(ctx: RuleContext, n_norm: int, param_args: list[int], what: str) -> None:
    xs = ctx.spaces(ctx.arg(0))
    ctx.same_all(xs, ctx.out(0))
    normed = xs[len(xs) - n_norm :]
    for i in param_args:
        p = ctx.arg(i)
        if ctx.is_tensor_ref(p):
            ctx.same_all(ctx.spaces(p), normed)
    weight = ctx.arg(param_args[0])
    bias = ctx.arg(param_args[1]) if len(param_args) > 1 else None
    if isinstance(weight, Ref):  # normalised * weight + bias: zero where the weight (and bias) are
        out = ctx.out(0)
        for k in range(n_norm):
            o = out[len(out) - n_norm + k]
            ctx.carry([ctx.spaces(weight)[k]] + ([ctx.spaces(bias)[k]] if isinstance(bias, Ref) else []), o)
    ctx.hint("normalized_shape", *normed)
    for s in normed:
        ctx.inexact(s, f"{what} normalises over the dimension")
    for k in range(1, ctx.n_outputs()):
        ctx.freeze_all(ctx.out(k), f"{what} statistics output")


@register("aten.layer_norm", "aten.native_layer_norm")
def layer_norm(ctx: RuleContext) -> None:
    _last_dims(ctx, len(ctx.arg(1)), [2, 3], "layer_norm")


@register("aten.rms_norm", "aten._fused_rms_norm")
def rms_norm(ctx: RuleContext) -> None:
    _last_dims(ctx, len(ctx.arg(1)), [2], "rms_norm")


@register("aten.group_norm", "aten.native_group_norm")
def group_norm(ctx: RuleContext) -> None:
    x = ctx.arg(0)
    native = ctx.node.target.startswith("aten.native_group_norm")
    groups = int(ctx.arg(6) if native else ctx.arg(1, "num_groups"))
    w, b = (ctx.arg(1), ctx.arg(2)) if native else (ctx.arg(2, "weight"), ctx.arg(3, "bias"))
    xs = ctx.spaces(x)
    ctx.same_all(xs, ctx.out(0))
    channel = xs[1]
    for p in (w, b):
        if ctx.is_tensor_ref(p):
            ctx.same(ctx.spaces(p)[0], channel)
    if ctx.is_tensor_ref(w):
        _affine_zero(ctx, w, b, channel, ctx.out(0)[1])
    g = ctx.rel.new_space(groups, (ctx.node.name, -1, 0))
    ctx.hint("num_groups", g)
    inner = ctx.rel.new_space(ctx.size(channel) // groups, (ctx.node.name, -1, 1))
    ctx.product(channel, [g, inner])
    ctx.inexact(inner, "group_norm normalises over the channels of a group")
    for k in range(1, ctx.n_outputs()):
        ctx.freeze_all(ctx.out(k), "group_norm statistics output")
