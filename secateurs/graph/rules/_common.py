"""Helpers shared by coupling rules (not a rule module itself)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from secateurs.graph.capture import Ref
from secateurs.graph.context import RuleContext


def norm_dim(dim: int, ndim: int) -> int:
    return dim + ndim if dim < 0 else dim


def passthrough(ctx: RuleContext) -> None:
    """Output 0 has the same dims as input 0 (unary elementwise, casts, copies)."""
    from secateurs.graph.rules._zeros import elementwise_zeros

    src = ctx.arg(0)
    ctx.same_all(ctx.spaces(src), ctx.out())
    for ref in ctx.tensor_refs():
        if ref != src:
            broadcast_into(ctx, ref, ctx.out())
    elementwise_zeros(ctx)


def broadcast_into(ctx: RuleContext, ref: Ref, out: Sequence[int]) -> None:
    """Join ``ref``'s dims with ``out`` aligned from the right; size-1 dims are broadcast (frozen)."""
    spaces = ctx.spaces(ref)
    offset = len(out) - len(spaces)
    for i, s in enumerate(spaces):
        j = i + offset
        if j < 0:
            ctx.freeze(s, "operand has more dims than the result")
        elif ctx.size(s) == ctx.size(out[j]):
            ctx.same(s, out[j])
        else:
            ctx.freeze(s, "broadcast size-1 dimension")


def broadcast(ctx: RuleContext, operands: Iterable[object] | None = None) -> None:
    """Elementwise op over broadcast operands: every tensor operand joins output 0."""
    from secateurs.graph.rules._zeros import elementwise_zeros

    out = ctx.out()
    refs = list(ctx.tensor_refs()) if operands is None else [r for r in operands if isinstance(r, Ref)]
    for ref in refs:
        broadcast_into(ctx, ref, out)
    ctx.mention(*out)
    elementwise_zeros(ctx)


def freeze_everything(ctx: RuleContext, reason: str) -> None:
    for ref in ctx.tensor_refs():
        ctx.freeze_all(ctx.spaces(ref), reason)
    for k in range(ctx.n_outputs()):
        ctx.freeze_all(ctx.out(k), reason)


def keep_other_dims(ctx: RuleContext, src: Sequence[int], out: Sequence[int], skip_src: set[int], skip_out: set[int],
                    carry: bool = True) -> None:
    """Join src and out dims in order, skipping the given positions on each side; with ``carry`` the out dims hold
    src's values (zero where src is zero)."""
    a = [s for i, s in enumerate(src) if i not in skip_src]
    b = [s for i, s in enumerate(out) if i not in skip_out]
    ctx.same_all(a, b)
    if carry:
        ctx.carry_all(a, b)


def contraction(ctx: RuleContext, pairs: Sequence[Sequence[int]], what: str) -> None:
    """A sum over a dimension of products of operands (matmul, linear, conv, einsum): removing units equals
    masking them only when some operand is zero at the removed units (a masked weight, a linear output).
    Otherwise the removed units add non-zero terms in the masked original: the dimension is marked inexact."""
    for spaces in pairs:
        if spaces and not any(ctx.is_zero(s) for s in spaces):
            ctx.inexact(spaces[0], f"{what} sums over the dimension values that are not zero where units are removed "
                                   "(e.g. after a sigmoid, exp or an added constant)")
