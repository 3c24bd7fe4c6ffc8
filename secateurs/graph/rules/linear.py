"""Linear layers and matrix products (linear, addmm, mm, bmm, matmul, baddbmm, einsum)."""

from __future__ import annotations

from secateurs.graph.capture import Ref
from secateurs.graph.context import RuleContext
from secateurs.graph.rules import register
from secateurs.graph.rules._common import broadcast_into, contraction


@register("aten.linear")
def linear(ctx: RuleContext) -> None:
    x, w, b = ctx.arg(0), ctx.arg(1), ctx.arg(2, "bias")
    xs, ws, out = ctx.spaces(x), ctx.spaces(w), ctx.out()
    ctx.same_all(xs[:-1], out[:-1])
    ctx.same(xs[-1], ws[1])
    ctx.same(out[-1], ws[0])
    contraction(ctx, [[xs[-1], ws[1]]], ctx.node.target)
    if b is not None:
        broadcast_into(ctx, b, out)
        ctx.carry([ws[0], ctx.spaces(b)[-1]], out[-1])  # W x + b: zero where W's rows and b are
    else:
        ctx.carry(ws[0], out[-1])
        ctx.carry_all(xs[:-1], out[:-1])


def _batched_matmul(ctx: RuleContext, a: Ref, b: Ref, out: list[int]) -> None:
    a_s, b_s = list(ctx.spaces(a)), list(ctx.spaces(b))
    what = ctx.node.target
    if len(a_s) == 1 and len(b_s) == 1:
        ctx.same(a_s[0], b_s[0])
        contraction(ctx, [[a_s[0], b_s[0]]], what)
        return
    if len(a_s) == 1:
        ctx.same(a_s[0], b_s[-2])
        contraction(ctx, [[a_s[0], b_s[-2]]], what)
        ctx.same_all(b_s[:-2] + [b_s[-1]], out)
        ctx.carry_all(b_s[:-2] + [b_s[-1]], out)
        return
    if len(b_s) == 1:
        ctx.same(a_s[-1], b_s[0])
        contraction(ctx, [[a_s[-1], b_s[0]]], what)
        ctx.same_all(a_s[:-1], out)
        ctx.carry_all(a_s[:-1], out)
        return
    ctx.same(a_s[-1], b_s[-2])
    contraction(ctx, [[a_s[-1], b_s[-2]]], what)
    ctx.same(a_s[-2], out[-2])
    ctx.same(b_s[-1], out[-1])
    ctx.carry(a_s[-2], out[-2])
    ctx.carry(b_s[-1], out[-1])
    batch_out = out[:-2]
    for side in (a_s[:-2], b_s[:-2]):
        offset = len(batch_out) - len(side)
        for i, s in enumerate(side):
            o = batch_out[i + offset]
            if ctx.size(s) == ctx.size(o):
                ctx.same(s, o)
                ctx.carry(s, o)  # a product: zero where either operand is
                if i + offset > 0:
                    ctx.tag(o, "heads")
            else:
                ctx.freeze(s, "broadcast batch dimension of a matrix product")
    ctx.mention(*batch_out)


@register("aten.matmul", "aten.mm", "aten.bmm")
def matmul(ctx: RuleContext) -> None:
    _batched_matmul(ctx, ctx.arg(0), ctx.arg(1), ctx.out())


@register("aten.addmm", "aten.baddbmm")
def addmm(ctx: RuleContext) -> None:
    bias, a, b = ctx.arg(0), ctx.arg(1), ctx.arg(2)
    out = ctx.out()
    _batched_matmul(ctx, a, b, out)
    broadcast_into(ctx, bias, out)
    # bias + a @ b: zero only where the product is and the bias indexes the dimension with zeros there
    bs = ctx.spaces(bias) if isinstance(bias, Ref) else []
    for j, o in enumerate(out):
        i = j - (len(out) - len(bs))
        bias_zero = 0 <= i < len(bs) and ctx.size(bs[i]) == ctx.size(o) and ctx.is_zero(bs[i])
        if not bias_zero:
            ctx.rel.zero.discard(o)


@register("aten.einsum")
def einsum(ctx: RuleContext) -> None:
    equation = str(ctx.arg(0)).replace(" ", "")
    operands = list(ctx.arg(1))
    lhs, _, rhs = equation.partition("->")
    terms = lhs.split(",")
    if not rhs and "->" not in equation:
        letters = sorted({c for t in terms for c in t if c.isalpha()})
        rhs = "".join(c for c in letters if sum(t.count(c) for t in terms) == 1)
    out = ctx.out()
    ell_rank = 0
    for term, op in zip(terms, operands, strict=True):
        if "..." in term:
            ell_rank = max(ell_rank, len(ctx.spaces(op)) - (len(term) - 3))
    by_letter: dict[str, list[int]] = {}

    def expand(term: str, spaces: list[int]) -> None:
        if "..." in term:
            pre, post = term.split("...")
            n_ell = len(spaces) - len(pre) - len(post)
            labels = list(pre) + [f"@{ell_rank - n_ell + i}" for i in range(n_ell)] + list(post)
        else:
            labels = list(term)
        for label, s in zip(labels, spaces, strict=True):
            by_letter.setdefault(label, []).append(s)

    for term, op in zip(terms, operands, strict=True):
        expand(term, list(ctx.spaces(op)))
    expand(rhs, list(out))
    for label, spaces in by_letter.items():
        full = max(ctx.size(s) for s in spaces)
        anchor = next(s for s in spaces if ctx.size(s) == full)
        for s in spaces:
            if ctx.size(s) == full:
                ctx.same(anchor, s)
            else:
                ctx.freeze(s, f"broadcast einsum index '{label}'")
        operand = [s for s in spaces if s not in out and ctx.size(s) == full]
        in_out = [s for s in spaces if s in out]
        if not in_out:
            contraction(ctx, [operand], f"einsum index '{label}'")
        elif any(ctx.is_zero(s) for s in operand):  # a product of operands: zero where one of them is
            ctx.zero(*in_out)
