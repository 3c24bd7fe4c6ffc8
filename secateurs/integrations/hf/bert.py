"""BERT: ``BertSelfAttention`` reads ``attention_head_size`` and ``all_head_size``; the config
derives the head size as ``hidden_size // num_attention_heads`` (so heads pruned without the hidden size
cannot be written to it: ``config_sync`` says so).
"""

from __future__ import annotations

from typing import Any

from transformers.models.bert.modeling_bert import BertIntermediate, BertSelfAttention

from secateurs.integrations.hf._common import Family, Heads, embedding_width, register_family, split_heads
from secateurs.surgery.registry import register_handler


def heads(m: Any) -> Heads:
    n = split_heads(m.query.out_features, m.attention_head_size, m, "query")
    return Heads(n, n, int(m.attention_head_size))


@register_handler(BertSelfAttention)
def bert_self_attention(m: Any, hints: dict[str, Any]) -> None:
    m.attention_head_size = int(hints.get("head_dim", m.attention_head_size))
    m.num_attention_heads = split_heads(m.query.out_features, m.attention_head_size, m, "query")
    m.all_head_size = m.num_attention_heads * m.attention_head_size


register_family(Family(
    ("bert",), (BertSelfAttention,), heads, (BertIntermediate,), lambda m: int(m.dense.out_features), embedding_width,
    layers="encoder.layer",
))
