"""Embedding lookups: the embedding width is prunable, the vocabulary is not."""

from __future__ import annotations

from secateurs.graph.context import RuleContext
from secateurs.graph.rules import register


@register("aten.embedding")
def embedding(ctx: RuleContext) -> None:
    w, ids = ctx.arg(0), ctx.arg(1)
    ws, idx, out = ctx.spaces(w), ctx.spaces(ids), ctx.out()
    ctx.freeze(ws[0], "embedding vocabulary rows")
    ctx.same(ws[1], out[-1])
    ctx.carry(ws[1], out[-1])
    ctx.same_all(idx, out[:-1])
