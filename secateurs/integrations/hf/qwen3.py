"""Qwen3 (q_norm/k_norm over head_dim are coupled by the engine): a Llama-style decoder with grouped-query attention (see ``_llama_like``)."""

from __future__ import annotations

from secateurs.integrations.hf._llama_like import register_llama_like

register_llama_like("qwen3", "Qwen3")
