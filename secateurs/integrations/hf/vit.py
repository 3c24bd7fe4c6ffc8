"""ViT: ``ViTAttention`` reads ``head_dim`` and ``num_attention_heads``; the modeling code takes
``head_dim`` from the config when present (``getattr(config, "head_dim", ...)``).
"""

from __future__ import annotations

from typing import Any

from torch import nn
from transformers.models.vit.modeling_vit import ViTAttention, ViTMLP, ViTPatchEmbeddings

from secateurs.integrations.hf._common import Family, Heads, register_family, split_heads
from secateurs.surgery.registry import register_handler


def heads(m: Any) -> Heads:
    n = split_heads(m.q_proj.out_features, m.head_dim, m, "q_proj")
    return Heads(n, n, int(m.head_dim))


@register_handler(ViTAttention)
def vit_attention(m: Any, hints: dict[str, Any]) -> None:
    m.head_dim = int(hints.get("head_dim", m.head_dim))
    m.num_attention_heads = split_heads(m.q_proj.out_features, m.head_dim, m, "q_proj")


def _hidden(model: nn.Module) -> int:
    for m in model.modules():
        if isinstance(m, ViTPatchEmbeddings):
            return int(m.projection.out_channels)
    raise LookupError("ViT model without patch embeddings")


register_family(Family(
    ("vit",), (ViTAttention,), heads, (ViTMLP,), lambda m: int(m.fc1.out_features), _hidden, layers="layers",
))
