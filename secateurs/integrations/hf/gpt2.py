"""GPT-2: ``Conv1D`` layers (weights stored [in, out], run as ``addmm``) and fused q/k/v in ``c_attn``.

``GPT2Attention`` splits ``c_attn``'s output at ``split_size`` and views each piece as heads of
``head_dim``; its config derives ``head_dim`` from ``n_embd // n_head``.
"""

from __future__ import annotations

from typing import Any

from transformers.models.gpt2.modeling_gpt2 import GPT2MLP, GPT2Attention, GPT2Model
from transformers.pytorch_utils import Conv1D

from secateurs.integrations.hf._common import Family, Heads, embedding_width, register_family, split_heads
from secateurs.integrations.hf.config_sync import sync_outermost_config_
from secateurs.surgery.registry import register_handler


@register_handler(Conv1D)
def conv1d(m: Any, hints: dict[str, Any]) -> None:
    m.nx, m.nf = m.weight.shape


def heads(m: Any) -> Heads:
    n = split_heads(m.split_size, m.head_dim, m, "c_attn")
    return Heads(n, n, int(m.head_dim))


@register_handler(GPT2Attention)
def gpt2_attention(m: Any, hints: dict[str, Any]) -> None:
    pieces = 2 if m.is_cross_attention else 3
    m.head_dim = int(hints.get("head_dim", m.head_dim))
    m.split_size = m.c_attn.nf // pieces
    m.num_heads = split_heads(m.split_size, m.head_dim, m, "c_attn")
    m.embed_dim = m.c_proj.nf


@register_handler(GPT2Model)
def gpt2_model(m: Any, hints: dict[str, Any]) -> None:
    m.embed_dim = m.wte.weight.shape[1]
    sync_outermost_config_(m, hints)  # this handler shadows the PreTrainedModel one for a bare GPT2Model


register_family(Family(
    ("gpt2",), (GPT2Attention,), heads, (GPT2MLP,), lambda m: int(m.c_fc.nf), embedding_width, layers="h",
))
