"""scaled_dot_product_attention: heads, GQA groups and head_dim discovered from the call."""

from __future__ import annotations

from secateurs.graph.context import RuleContext
from secateurs.graph.rules import register
from secateurs.graph.rules._common import contraction


@register("aten.scaled_dot_product_attention", "aten._scaled_dot_product_flash_attention_for_cpu",
          "aten._scaled_dot_product_efficient_attention", "aten._scaled_dot_product_flash_attention")
def sdpa(ctx: RuleContext) -> None:
    q, k, v = ctx.arg(0), ctx.arg(1), ctx.arg(2)
    qs, ks, vs, out = list(ctx.spaces(q)), list(ctx.spaces(k)), list(ctx.spaces(v)), list(ctx.out(0))
    mask = ctx.node.kwargs.get("attn_mask", ctx.arg(3))
    scale = ctx.node.kwargs.get("scale", ctx.arg(6))
    gqa = bool(ctx.node.kwargs.get("enable_gqa", ctx.arg(7, default=False)))
    # [..., L, E] x [..., S, E] x [..., S, Ev] -> [..., L, Ev]
    ctx.same(qs[-2], out[-2])
    ctx.same(ks[-2], vs[-2])
    ctx.same(vs[-1], out[-1])
    ctx.carry(vs[-1], out[-1])  # attention weights times v: zero where v is
    ctx.tag(vs[-1], "head_dim")
    ctx.hint("head_dim", vs[-1])
    if scale is None:
        ctx.freeze_all([qs[-1], ks[-1]], "attention head_dim with the default 1/sqrt(head_dim) scale")
    else:
        ctx.same(qs[-1], ks[-1])
        contraction(ctx, [[qs[-1], ks[-1]]], "attention scores (q . k)")
        ctx.tag(qs[-1], "head_dim")
    batch_q, batch_k, batch_v, batch_o = qs[:-2], ks[:-2], vs[:-2], out[:-2]
    ctx.same_all(batch_q, batch_o)
    for bv, bo in zip(batch_v, batch_o, strict=False):
        ctx.carry(bv, bo)  # a head whose v is zero outputs zero (with GQA: every query head of the group)
    if batch_q:
        hq, hk = batch_q[-1], batch_k[-1]
        ctx.same(batch_k[-1], batch_v[-1])
        if ctx.size(hq) == ctx.size(hk):
            ctx.same(hq, hk)
        elif gqa and ctx.size(hq) % ctx.size(hk) == 0:
            per_group = ctx.rel.new_space(ctx.size(hq) // ctx.size(hk), (ctx.node.name, -1, 0))
            ctx.tag(per_group, "query_heads")
            ctx.product(hq, [hk, per_group])
        else:
            ctx.freeze_all([hq, hk], "attention heads of q and k/v that do not match")
        ctx.tag(hq, "heads")
        ctx.tag(hk, "heads")
        ctx.hint("num_heads", hq)
        ctx.hint("num_key_value_heads", hk)
        for a, b, c in zip(batch_q[:-1], batch_k[:-1], batch_v[:-1], strict=True):
            for s in (b, c):
                if ctx.size(s) == ctx.size(a):
                    ctx.same(a, s)
                else:
                    ctx.freeze(s, "broadcast batch dimension of attention")
    if mask is not None and ctx.is_tensor_ref(mask):
        scores = batch_q + [qs[-2], ks[-2]]
        ms = ctx.spaces(mask)
        offset = len(scores) - len(ms)
        for i, s in enumerate(ms):
            if i + offset >= 0 and ctx.size(s) == ctx.size(scores[i + offset]):
                ctx.same(s, scores[i + offset])
            else:
                ctx.freeze(s, "broadcast attention-mask dimension")
    for extra in range(1, ctx.n_outputs()):
        ctx.freeze_all(ctx.out(extra), "attention statistics output")


@register("aten.softmax", "aten._softmax", "aten.log_softmax", "aten._log_softmax", "aten._safe_softmax")
def softmax(ctx: RuleContext) -> None:
    xs, out = ctx.spaces(ctx.arg(0)), ctx.out()
    ctx.same_all(xs, out)
    d = int(ctx.arg(1))
    d = d + len(xs) if d < 0 else d
    ctx.inexact(xs[d], "softmax normalises over the dimension")
