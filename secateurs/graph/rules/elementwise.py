"""Elementwise ops: unary pass-through and broadcasting n-ary ops."""

from __future__ import annotations

from secateurs.graph.context import RuleContext
from secateurs.graph.rules import register
from secateurs.graph.rules._common import broadcast, passthrough

UNARY = [
    "aten.relu", "aten.relu6", "aten.gelu", "aten.silu", "aten.sigmoid", "aten.tanh", "aten.hardtanh",
    "aten.hardswish", "aten.hardsigmoid", "aten.leaky_relu", "aten.elu", "aten.selu", "aten.celu",
    "aten.softplus", "aten.mish", "aten.log_sigmoid", "aten.threshold",
    "aten.dropout", "aten.feature_dropout", "aten.alpha_dropout", "aten.feature_alpha_dropout",
    "aten.clone", "aten.contiguous", "aten.alias", "aten.detach", "aten.lift_fresh_copy",
    "aten.neg", "aten.abs", "aten.exp", "aten.log", "aten.log1p", "aten.expm1", "aten.sqrt", "aten.rsqrt",
    "aten.square", "aten.erf", "aten.sin", "aten.cos", "aten.reciprocal", "aten.sign", "aten.floor",
    "aten.ceil", "aten.round", "aten.trunc", "aten.logical_not", "aten.bitwise_not", "aten.isnan",
    "aten.isinf", "aten.nan_to_num", "aten.to", "aten._to_copy", "aten.type_as", "aten.zeros_like",
    "aten.ones_like", "aten.full_like", "aten.empty_like", "aten.rand_like", "aten.randn_like",
    "aten.fill", "aten.pow.Tensor_Scalar", "aten.clamp", "aten.clamp_min", "aten.clamp_max",
    "aten.bernoulli", "aten.sgn",
]

BINARY = [
    "aten.add", "aten.sub", "aten.rsub", "aten.mul", "aten.div", "aten.true_divide", "aten.floor_divide",
    "aten.remainder", "aten.fmod", "aten.maximum", "aten.minimum", "aten.pow.Tensor_Tensor", "aten.atan2",
    "aten.eq", "aten.ne", "aten.lt", "aten.le", "aten.gt", "aten.ge", "aten.logical_and",
    "aten.logical_or", "aten.logical_xor", "aten.__and__", "aten.__or__", "aten.__xor__",
    "aten.bitwise_and", "aten.bitwise_or", "aten.where", "aten.masked_fill", "aten.lerp",
    "aten.addcmul", "aten.addcdiv", "aten.copy",
]


@register(*UNARY)
def unary(ctx: RuleContext) -> None:
    if ctx.node.target.startswith("aten.type_as"):
        # type_as(x, other): only x's shape flows; other contributes its dtype.
        ctx.same_all(ctx.spaces(ctx.arg(0)), ctx.out())
        ctx.carry_all(ctx.spaces(ctx.arg(0)), ctx.out())
        ctx.mention(*ctx.spaces(ctx.arg(1)))
        return
    passthrough(ctx)


@register(*BINARY)
def binary(ctx: RuleContext) -> None:
    broadcast(ctx)


@register("aten.prelu", "aten._prelu_kernel")
def prelu(ctx: RuleContext) -> None:
    x, w = ctx.arg(0), ctx.arg(1)
    xs, ws = ctx.spaces(x), ctx.spaces(w)
    ctx.same_all(xs, ctx.out())
    ctx.carry_all(xs, ctx.out())  # prelu(0) = 0 whatever the slope
    if ws and len(xs) >= 2 and ctx.size(ws[0]) == ctx.size(xs[1]) and ctx.size(ws[0]) > 1:
        ctx.same(ws[0], xs[1])
    else:
        ctx.freeze_all(ws, "single shared PReLU slope")
