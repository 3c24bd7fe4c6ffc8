"""OPT: MHA with ``embed_dim // num_heads`` heads, ``fc1``/``fc2`` directly in the decoder layer, learned
positions with an offset of 2, and ``project_in``/``project_out`` when ``word_embed_proj_dim`` differs
from ``hidden_size``.

* ``OPTAttention`` views q/k/v with ``num_heads`` and ``head_dim`` attributes: both refreshed.
* The hidden size is the residual stream, read from the positional embeddings (``embed_positions``
  lives in ``hidden_size`` even when the token embeddings do not); the position rows (``offset`` + max
  positions) are never pruned.
* ``word_embed_proj_dim`` (the token-embedding / LM-head width) is the hidden size when there is no
  projection, and its own group when there is one; config discovery finds and writes it.
* ``OPTConfig`` derives ``head_dim = hidden_size // num_attention_heads``: pruning heads but not the
  hidden size cannot be expressed by a stock config (a warning says so, as for BERT and GPT-2).
"""

from __future__ import annotations

from typing import Any

from torch import nn
from transformers.models.opt.modeling_opt import OPTAttention, OPTDecoder, OPTDecoderLayer

from secateurs.integrations.hf._common import Family, Heads, register_family, split_heads
from secateurs.surgery.registry import register_handler


def heads(m: Any) -> Heads:
    n = split_heads(m.q_proj.out_features, m.head_dim, m, "q_proj")
    return Heads(n, n, int(m.head_dim))


@register_handler(OPTAttention)
def opt_attention(m: Any, hints: dict[str, Any]) -> None:
    m.head_dim = int(hints.get("head_dim", m.head_dim))
    m.num_heads = split_heads(m.q_proj.out_features, m.head_dim, m, "q_proj")
    m.embed_dim = int(m.out_proj.out_features)


@register_handler(OPTDecoderLayer)
def opt_decoder_layer(m: Any, hints: dict[str, Any]) -> None:
    m.embed_dim = int(m.fc2.out_features)


def _decoder(model: nn.Module) -> Any:
    for m in model.modules():
        if isinstance(m, OPTDecoder):
            return m
    raise LookupError("OPT model without an OPTDecoder")


def _hidden(model: nn.Module) -> int:
    return int(_decoder(model).embed_positions.weight.shape[1])


register_family(Family(
    ("opt",), (OPTAttention,), heads, (OPTDecoderLayer,), lambda m: int(m.fc1.out_features), _hidden,
    layers="decoder.layers",
))
