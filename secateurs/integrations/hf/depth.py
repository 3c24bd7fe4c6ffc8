"""Layer dropping for Hugging Face models: where the layer list is, and the config after blocks are removed.

The family's ``layers`` path (under ``model.base_model``) names the list; a model_type without a
family falls back to the generic search (the one ModuleList of same-type blocks). After a drop,
``config.num_hidden_layers`` (``n_layer`` through the config's attribute map) is the new count and
per-layer config lists (``layer_types``) keep the entries of the remaining layers, so ``DynamicCache``
(built from the config) has one slot per remaining layer; ``layer_idx`` of every attention is
renumbered by the generic surgery.
"""

from __future__ import annotations

import warnings
from typing import Any

from torch import nn
from transformers import PreTrainedModel

from secateurs.graph.blocks import DepthAdapter, register_depth_adapter
from secateurs.integrations.hf._common import FAMILIES

#: config attributes holding one entry per layer
PER_LAYER_LISTS = ("layer_types",)


def _base_path(model: Any) -> str:
    base = getattr(model, "base_model", model)
    for path, m in model.named_modules():
        if m is base:
            return path
    return ""


def find(model: nn.Module) -> str | None:
    family = FAMILIES.find(getattr(getattr(model, "config", None), "model_type", ""))
    if family is None or not family.layers:
        return None
    base = _base_path(model)
    return f"{base}.{family.layers}" if base else family.layers


def after_drop(model: nn.Module, container: str, kept: list[int]) -> None:
    config: Any = getattr(model, "config", None)
    if config is None:
        return
    old = getattr(config, "num_hidden_layers", None)
    config.num_hidden_layers = len(kept)
    for name in PER_LAYER_LISTS:
        values = getattr(config, name, None)
        if isinstance(values, (list, tuple)) and old is not None and len(values) == old:
            setattr(config, name, type(values)(values[i] for i in kept))
    if getattr(config, "scale_attn_by_inverse_layer_idx", False):
        warnings.warn("config.scale_attn_by_inverse_layer_idx is set: attention scales depend on each layer's index, "
                      "which changed when layers were dropped, so the pruned model computes a different function",
                      stacklevel=2)


register_depth_adapter(PreTrainedModel)(DepthAdapter(find, after_drop))
