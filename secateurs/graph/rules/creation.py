"""Tensor creation with constant sizes (frozen), and graph bookkeeping ops without tensor results."""

from __future__ import annotations

from secateurs.graph.context import RuleContext
from secateurs.graph.rules import register


@register(
    "aten.arange", "aten.zeros", "aten.ones", "aten.full", "aten.empty", "aten.empty_strided",
    "aten.rand", "aten.randn", "aten.randint", "aten.scalar_tensor", "aten.linspace", "aten.logspace",
    "aten.eye", "aten.new_zeros", "aten.new_ones", "aten.new_full",
    "aten.empty_permuted", "aten.randperm",
)
def creation(ctx: RuleContext) -> None:
    for k in range(ctx.n_outputs()):
        ctx.freeze_all(ctx.out(k), f"created by {ctx.node.target} with a constant size")
    for ref in ctx.tensor_refs():  # new_* take a template tensor for dtype/device only
        ctx.mention(*ctx.spaces(ref))


@register("aten.new_empty")
def new_empty(ctx: RuleContext) -> None:
    """``template.new_empty(size)``: uninitialised memory that forward() fills by writing into it (DeepSeek's MLA
    builds its keys as ``k.new_empty(...)`` and copies the two parts in). When the size has the template's rank,
    dims of equal size are the template's (the same batch, heads and positions); the other dims have constant
    sizes and are frozen, as for every other creation op."""
    template, out = ctx.spaces(ctx.arg(0)), ctx.out()
    for s, o in zip(template, out, strict=False):
        if len(template) == len(out) and ctx.size(s) == ctx.size(o):
            ctx.same(s, o)
        else:
            ctx.freeze(o, f"created by {ctx.node.target} with a constant size")
    ctx.mention(*template, *out)


@register(
    "aten._assert_tensor_metadata", "aten._assert_scalar", "aten.sym_size", "aten.sym_numel",
    "aten._assert_async", "aten.item", "aten._local_scalar_dense",
)
def bookkeeping(ctx: RuleContext) -> None:
    for ref in ctx.tensor_refs():
        ctx.mention(*ctx.spaces(ref))
    for k in range(ctx.n_outputs()):
        ctx.freeze_all(ctx.out(k), "metadata value")
