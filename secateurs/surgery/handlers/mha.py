"""nn.MultiheadAttention: pruned heads or widths swap in PrunedMultiheadAttention."""

from __future__ import annotations

from typing import Any

from torch import nn

from secateurs.errors import ApplyError
from secateurs.surgery.modules import PrunedMultiheadAttention
from secateurs.surgery.registry import register_handler


@register_handler(nn.MultiheadAttention)
def multihead_attention(m: Any, hints: dict[str, Any]) -> None:
    if m.bias_k is not None or m.add_zero_attn:
        raise ApplyError("pruning nn.MultiheadAttention with bias_k/bias_v or add_zero_attn is not supported; "
                         "ignore this module (ignore=[...])")
    packed = getattr(m, "_packed_qkv", m._qkv_same_embed_dim)
    q_weight = m.in_proj_weight if packed else m.q_proj_weight
    inner = q_weight.shape[0] // 3 if packed else q_weight.shape[0]
    head_dim = int(hints.get("head_dim", m.head_dim))
    num_heads = int(hints.get("num_heads", inner // head_dim))
    if num_heads * head_dim != inner:
        raise ApplyError(f"nn.MultiheadAttention with q/k/v width {inner} does not split into {num_heads} heads "
                         f"of {head_dim}")
    m.num_heads, m.head_dim = num_heads, head_dim
    m.embed_dim = m.out_proj.weight.shape[0]
    if packed:
        m.kdim = m.vdim = m.in_proj_weight.shape[1]
    else:
        m.kdim, m.vdim = m.k_proj_weight.shape[1], m.v_proj_weight.shape[1]
    if type(m) is nn.MultiheadAttention:  # the stock forward needs q/k/v width == embed_dim
        m.__class__ = PrunedMultiheadAttention
        # nn.TransformerEncoderLayer's fused inference path reads _qkv_same_embed_dim and bypasses
        # forward(); clearing it keeps callers on forward(), which reads _packed_qkv instead.
        m._packed_qkv, m._qkv_same_embed_dim = packed, False
