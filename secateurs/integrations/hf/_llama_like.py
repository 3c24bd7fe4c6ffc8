"""Shared parts of the Llama-style decoders with grouped-query attention (Llama, Mistral, Qwen2, Qwen3, and
Gemma's attention); each family registers itself from its own module with ``register_llama_like``.

Their attention modules read ``head_dim`` (the ``view`` into heads) and ``num_key_value_groups``
(``repeat_kv`` and the GQA path of SDPA); the head counts follow from the projection widths.
``scaling`` is left as it was, so pruned ``head_dim`` keeps the original softmax temperature.
"""

from __future__ import annotations

import importlib
from typing import Any

from secateurs.errors import ApplyError
from secateurs.integrations.hf._common import Family, Heads, embedding_width, register_family, split_heads
from secateurs.surgery.registry import register_handler


def _classes(model_type: str, prefix: str) -> dict[str, type]:
    """The transformers classes ``{prefix}Attention``/``MLP``/``DecoderLayer`` of one family ({} when absent)."""
    try:
        module = importlib.import_module(f"transformers.models.{model_type}.modeling_{model_type}")
    except ImportError:  # an older transformers without this family
        return {}
    return {suffix: cls for suffix in ("Attention", "MLP", "DecoderLayer")
            if (cls := getattr(module, prefix + suffix, None)) is not None}


def heads(m: Any) -> Heads:
    head_dim = int(m.head_dim)
    n_kv = split_heads(m.v_proj.out_features, head_dim, m, "v_proj")
    qk_dim = m.k_proj.out_features // n_kv if n_kv else 0
    if qk_dim != head_dim:
        raise ApplyError(
            f"{type(m).__name__} uses one head_dim for q, k and v, but k_proj now has heads of {qk_dim} and "
            f"v_proj heads of {head_dim}; prune the q/k and v head_dim groups by the same amount"
        )
    return Heads(split_heads(m.q_proj.out_features, head_dim, m, "q_proj"), n_kv, head_dim)


def gqa_attention(m: Any, hints: dict[str, Any]) -> None:
    m.head_dim = int(hints.get("head_dim", m.head_dim))
    h = heads(m)
    if h.num_heads % h.num_key_value_heads:
        raise ApplyError(f"{type(m).__name__}: {h.num_heads} query heads are not a multiple of "
                         f"{h.num_key_value_heads} key/value heads")
    m.num_key_value_groups = h.num_heads // h.num_key_value_heads


def gated_mlp(m: Any, hints: dict[str, Any]) -> None:
    m.intermediate_size = m.down_proj.in_features
    m.hidden_size = m.down_proj.out_features


def decoder_layer(m: Any, hints: dict[str, Any]) -> None:
    m.hidden_size = m.input_layernorm.weight.shape[0]


def register_llama_like(model_type: str, prefix: str) -> None:
    """Register the handlers and the ``Family`` of one Llama-style model type (``"mistral"``, ``"Mistral"``)."""
    found = _classes(model_type, prefix)
    if "Attention" not in found or "MLP" not in found:
        return
    register_handler(found["Attention"])(gqa_attention)
    register_handler(found["MLP"])(gated_mlp)
    if "DecoderLayer" in found:
        register_handler(found["DecoderLayer"])(decoder_layer)
    register_family(Family((model_type,), (found["Attention"],), heads, (found["MLP"],),
                           lambda m: int(m.down_proj.in_features), embedding_width, layers="layers"))
