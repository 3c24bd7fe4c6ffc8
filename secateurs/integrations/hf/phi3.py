"""Phi-3: fused ``qkv_proj`` (query, key and value rows stacked) and fused ``gate_up_proj``.

The engine couples the slices: ``qkv[..., :q]``, ``[q:q+kv]``, ``[q+kv:]`` are links into the fused
output, so removing a KV group removes its query, key and value rows together; ``gate_up_proj`` is
``chunk(2)``, an equal partition, so an FFN unit removes the same row of the gate and the up half.

``Phi3Attention.forward`` finds the query rows as ``config.num_attention_heads * head_dim``: the
config is shared by every layer, so head counts must stay uniform (the default), and the root
handler rewrites ``num_attention_heads``/``num_key_value_heads``/``intermediate_size`` before any
forward. ``Phi3Config`` derives ``head_dim`` from ``hidden_size // num_attention_heads`` unless a
``head_dim`` attribute is present, so it is written whenever that division would give another value.
"""

from __future__ import annotations

from typing import Any

from transformers.models.phi3.modeling_phi3 import Phi3Attention, Phi3DecoderLayer, Phi3MLP

from secateurs.errors import ApplyError
from secateurs.graph.rules.concat import refreshes_slice_bounds
from secateurs.integrations.hf._common import Family, Heads, embedding_width, register_family, split_heads
from secateurs.surgery.registry import register_handler

refreshes_slice_bounds(Phi3Attention.__name__)  # query_pos and the k/v bounds come from the config / attributes

def heads(m: Any) -> Heads:
    """Query heads from ``o_proj``'s input; key/value heads from the rest of ``qkv_proj``'s rows."""
    head_dim = int(m.head_dim)
    n_q = split_heads(m.o_proj.in_features, head_dim, m, "o_proj")
    kv_rows = m.qkv_proj.out_features - n_q * head_dim
    if kv_rows <= 0 or kv_rows % 2:
        raise ApplyError(f"{type(m).__name__}: qkv_proj has {m.qkv_proj.out_features} rows, which is not {n_q} query "
                         f"heads of {head_dim} plus equal key and value parts")
    return Heads(n_q, split_heads(kv_rows // 2, head_dim, m, "qkv_proj key/value rows"), head_dim)


@register_handler(Phi3Attention)
def phi3_attention(m: Any, hints: dict[str, Any]) -> None:
    if int(hints.get("head_dim", m.head_dim)) != m.head_dim:
        raise ApplyError(
            f"{type(m).__name__} uses one head_dim for q, k and v, and its RoPE q/k head_dim is frozen (rebuilt from "
            "the config at load); head_dim cannot be pruned here: prune heads or query_heads instead")
    h = heads(m)
    if h.num_heads % h.num_key_value_heads:
        raise ApplyError(f"{type(m).__name__}: {h.num_heads} query heads are not a multiple of "
                         f"{h.num_key_value_heads} key/value heads")
    m.num_key_value_heads = h.num_key_value_heads
    m.num_key_value_groups = h.num_heads // h.num_key_value_heads


@register_handler(Phi3DecoderLayer)
def phi3_decoder_layer(m: Any, hints: dict[str, Any]) -> None:
    m.hidden_size = m.input_layernorm.weight.shape[0]


register_family(Family(("phi3",), (Phi3Attention,), heads, (Phi3MLP,), lambda m: int(m.down_proj.in_features),
                       embedding_width, layers="layers"))
