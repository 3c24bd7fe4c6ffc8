"""Tiny Hugging Face models, one per supported ``model_type``, built from random configs (no downloads).

Used by the tests of ``secateurs.integrations.hf`` (every registered family must have an entry
here) and handy for plugin authors. Importing this module does not import transformers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

VOCAB, HIDDEN, FFN, LAYERS, HEADS, KV_HEADS = 128, 64, 128, 2, 4, 2


@dataclass
class TinyHF:
    """A tiny model with example inputs; ``decoder`` models support ``generate()``."""

    model: nn.Module
    inputs: dict[str, Any]
    decoder: bool
    gqa: bool


def _ids(seed: int = 0) -> torch.Tensor:
    return torch.randint(1, VOCAB, (2, 8), generator=torch.Generator().manual_seed(seed))


def _gqa_decoder(config_name: str, model_name: str, **extra: Any) -> Callable[..., TinyHF]:
    def build(layers: int = LAYERS) -> TinyHF:
        import transformers

        config = getattr(transformers, config_name)(
            vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=FFN, num_hidden_layers=layers,
            num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, max_position_embeddings=64,
            pad_token_id=0, bos_token_id=1, eos_token_id=2, **extra,
        )
        model = getattr(transformers, model_name)(config).eval()
        return TinyHF(model, {"input_ids": _ids(), "use_cache": False}, decoder=True, gqa=True)

    return build


def _gpt2(layers: int = LAYERS) -> TinyHF:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=VOCAB, n_embd=HIDDEN, n_inner=FFN, n_layer=layers, n_head=HEADS, n_positions=64,
                        bos_token_id=1, eos_token_id=2, pad_token_id=0)
    return TinyHF(GPT2LMHeadModel(config).eval(), {"input_ids": _ids(), "use_cache": False}, decoder=True, gqa=False)


def _opt(layers: int = LAYERS, word_embed_proj_dim: int | None = None) -> TinyHF:
    from transformers import OPTConfig, OPTForCausalLM

    config = OPTConfig(vocab_size=VOCAB, hidden_size=HIDDEN, ffn_dim=FFN, num_hidden_layers=layers,
                       num_attention_heads=HEADS, max_position_embeddings=64, pad_token_id=0, bos_token_id=1,
                       eos_token_id=2, word_embed_proj_dim=word_embed_proj_dim or HIDDEN)
    return TinyHF(OPTForCausalLM(config).eval(), {"input_ids": _ids(), "use_cache": False}, decoder=True, gqa=False)


def _bert(layers: int = LAYERS) -> TinyHF:
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=FFN, num_hidden_layers=layers,
                        num_attention_heads=HEADS, max_position_embeddings=64)
    return TinyHF(BertForSequenceClassification(config).eval(), {"input_ids": _ids()}, decoder=False, gqa=False)


def _vit(layers: int = LAYERS) -> TinyHF:
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(image_size=16, patch_size=8, hidden_size=HIDDEN, intermediate_size=FFN,
                       num_hidden_layers=layers, num_attention_heads=HEADS)
    pixels = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    return TinyHF(ViTForImageClassification(config).eval(), {"pixel_values": pixels}, decoder=False, gqa=False)


#: model_type -> factory of a tiny model of that family (``layers=`` sets the depth)
TINY: dict[str, Callable[..., TinyHF]] = {
    "llama": _gqa_decoder("LlamaConfig", "LlamaForCausalLM"),
    "mistral": _gqa_decoder("MistralConfig", "MistralForCausalLM"),
    "qwen2": _gqa_decoder("Qwen2Config", "Qwen2ForCausalLM"),
    "qwen3": _gqa_decoder("Qwen3Config", "Qwen3ForCausalLM", head_dim=HIDDEN // HEADS),
    "gemma": _gqa_decoder("GemmaConfig", "GemmaForCausalLM", head_dim=HIDDEN // HEADS),
    "phi3": _gqa_decoder("Phi3Config", "Phi3ForCausalLM"),
    "opt": _opt,
    "gpt2": _gpt2,
    "bert": _bert,
    "vit": _vit,
}


#: the families above that are encoders (no ``generate()``); every other entry is a causal LM
ENCODERS = ("bert", "vit")

#: the families above with grouped-query attention (fewer key/value heads than query heads)
GQA_TYPES = ("llama", "mistral", "qwen2", "qwen3", "gemma", "phi3")


def tiny(model_type: str, layers: int = LAYERS) -> TinyHF:
    torch.manual_seed(0)
    return TINY[model_type](layers=layers)


def token_batches(n: int = 3, seed: int = 1, seq_len: int = 8) -> list[dict[str, torch.Tensor]]:
    """Calibration batches of random token ids for the tiny models."""
    g = torch.Generator().manual_seed(seed)
    return [{"input_ids": torch.randint(1, VOCAB, (2, seq_len), generator=g)} for _ in range(n)]
