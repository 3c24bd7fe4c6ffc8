"""Gemma: Llama-style GQA attention and gated MLP, plus two differences.

* RMSNorm multiplies by ``(1 + weight)``: nothing to do for surgery (the weight is sliced like any
  other); masking a removed hidden channel still zeroes it, because its input is zero.
* The input embeddings are multiplied by ``sqrt(hidden_size)`` (``embed_scale``), a constant that
  ``from_pretrained`` recomputes from ``config.hidden_size``. When the hidden size is pruned from
  ``h`` to ``h'``, the handler compensates exactly: the embedding matrix is multiplied by
  ``c = sqrt(h / h')`` and ``embed_scale`` set to ``sqrt(h')`` (the product is unchanged). When the
  LM head is tied to the embeddings (Gemma's default) it was scaled by ``c`` too, so the final
  norm's ``(1 + weight)`` is divided by ``c``: the logits are unchanged and a ``save_pretrained``
  checkpoint rebuilds the same function with the stock class.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from transformers.models.gemma.modeling_gemma import (
    GemmaAttention,
    GemmaDecoderLayer,
    GemmaForCausalLM,
    GemmaMLP,
    GemmaModel,
    GemmaTextScaledWordEmbedding,
)

from secateurs.integrations.hf._common import Family, embedding_width, register_family
from secateurs.integrations.hf._llama_like import decoder_layer, gated_mlp, gqa_attention, heads
from secateurs.integrations.hf.config_sync import sync_outermost_config_
from secateurs.surgery.registry import register_handler

register_handler(GemmaAttention)(gqa_attention)
register_handler(GemmaMLP)(gated_mlp)
register_handler(GemmaDecoderLayer)(decoder_layer)


@register_handler(GemmaModel)
def gemma_model(m: Any, hints: dict[str, Any]) -> None:
    emb = m.embed_tokens
    if isinstance(emb, GemmaTextScaledWordEmbedding):
        width = int(emb.weight.shape[1])
        old, new = float(emb.scalar_embed_scale), math.sqrt(width)
        if abs(old - new) > 1e-12 * new:
            with torch.no_grad():
                emb.weight.mul_(old / new)  # a new tensor made by the slicing: the snapshot keeps the original
            emb.scalar_embed_scale = new
            emb._buffers["embed_scale"] = torch.tensor(new, dtype=emb.embed_scale.dtype, device=emb.embed_scale.device)
    sync_outermost_config_(m, hints)


@register_handler(GemmaForCausalLM)
def gemma_for_causal_lm(m: Any, hints: dict[str, Any]) -> None:
    before = hints.get("shapes_before", {}).get("model.embed_tokens.weight")
    width = int(m.model.embed_tokens.weight.shape[1])
    if before is not None and int(before[1]) != width and m.lm_head.weight is m.model.embed_tokens.weight:
        c = math.sqrt(int(before[1]) / width)  # the tied head was scaled by c with the embeddings
        norm = m.model.norm
        with torch.no_grad():
            norm.weight.copy_((1.0 + norm.weight.float()) / c - 1.0)
    sync_outermost_config_(m, hints)


register_family(Family(("gemma",), (GemmaAttention,), heads, (GemmaMLP,), lambda m: int(m.down_proj.in_features),
                       embedding_width, layers="layers"))
