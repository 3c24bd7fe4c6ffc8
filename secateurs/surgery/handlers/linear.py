"""Linear, Bilinear-free dense layers, and Embedding."""

from __future__ import annotations

from typing import Any

from torch import nn

from secateurs.surgery.registry import register_handler


@register_handler(nn.Linear)
def linear(m: Any, hints: dict[str, Any]) -> None:
    m.out_features, m.in_features = m.weight.shape


@register_handler(nn.Embedding)
def embedding(m: Any, hints: dict[str, Any]) -> None:
    m.num_embeddings, m.embedding_dim = m.weight.shape
