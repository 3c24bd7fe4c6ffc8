"""Accumulation at positions held in a tensor: ``index_add`` (a mixture-of-experts layer adding each expert's
outputs back into the rows of the tokens it took)."""

from __future__ import annotations

from secateurs.graph.context import RuleContext
from secateurs.graph.rules import register
from secateurs.graph.rules._common import norm_dim


@register("aten.index_add")
def index_add(ctx: RuleContext) -> None:
    """``out = self.index_add(dim, index, source)``: ``out`` has the dims of ``self``; along ``dim`` the rows of
    ``source`` land at positions held in ``index`` (frozen). Off ``dim``, ``source`` has the dims of ``self``, and
    ``out`` is zero where both are zero (a sum)."""
    xs, out = list(ctx.spaces(ctx.arg(0))), list(ctx.out())
    d = norm_dim(int(ctx.arg(1, "dim")), len(xs))
    ctx.same_all(xs, out)
    ctx.freeze(xs[d], "dimension written at positions held in a tensor (index_add)")
    index = ctx.arg(2, "index")
    if ctx.is_tensor_ref(index):
        ctx.freeze_all(ctx.spaces(index), "positions of an index_add")
    source = ctx.arg(3, "source")
    src = list(ctx.spaces(source)) if ctx.is_tensor_ref(source) else []
    if len(src) != len(xs):
        ctx.freeze_all(src + xs, "index_add source of another rank")
        return
    for i, (s, x, o) in enumerate(zip(src, xs, out, strict=True)):
        if i == d:
            ctx.freeze(s, "positions of an index_add")
            continue
        ctx.same(s, x)
        if ctx.is_zero(s) and ctx.is_zero(x):
            ctx.zero(o)
