"""Handlers for timm modules whose forward reads head counts and widths from attributes."""

from __future__ import annotations

from typing import Any

from timm.layers import Attention

from secateurs.surgery.registry import register_handler


@register_handler(Attention)
def attention(m: Any, hints: dict[str, Any]) -> None:
    """``qkv(x).reshape(B, N, 3, num_heads, head_dim)``: refresh the head count and widths."""
    qkv_out = m.qkv.weight.shape[0]
    m.head_dim = int(hints.get("head_dim", m.head_dim))
    m.num_heads = int(hints.get("num_heads", qkv_out // (3 * m.head_dim)))
    if hasattr(m, "attn_dim"):
        m.attn_dim = m.num_heads * m.head_dim
