"""Layer dropping for Hugging Face models: where the layer list is, and the config after blocks are removed.

The family's ``layers`` path (under ``model.base_model``) names the list; a model_type without a
family falls back to the generic search (the one ModuleList of same-type blocks). After a drop, the config is
rewritten generically: a layer-count field (``num_hidden_layers``, ``n_layer`` through the attribute map, or any
integer field equal to the old count) takes the new count, and every per-layer list of the old length
(``layer_types``, ``attention_layers``, ...) keeps the entries of the remaining layers; the first rewrite under
which the class, rebuilt on the meta device from the config as ``from_pretrained`` reads it back, has exactly the
model's tensors is kept. When none does (per-layer fields in a compressed form, stage names, several block lists
under one count), the drop is refused with a ``ConfigRewriteError``: a stock checkpoint would re-create or reject
those blocks. ``sc.plan`` finds this before any surgery (its plan check applies the plan to a meta-device copy).
``layer_idx`` of every attention is renumbered by the generic surgery.
"""

from __future__ import annotations

import copy
import re
import warnings
from collections.abc import Iterator
from typing import Any

from torch import nn
from transformers import PreTrainedModel

from secateurs.errors import ConfigRewriteError
from secateurs.graph.blocks import DepthAdapter, register_depth_adapter
from secateurs.integrations.hf._common import FAMILIES
from secateurs.integrations.hf.config_discovery import (
    build_meta,
    int_fields,
    is_config,
    observe,
    reloaded_config,
)

_COUNT = re.compile(r"(num_)?(hidden_)?layers|n_layers?|num_(encoder|decoder)_layers|(encoder|decoder)_layers")


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


def _lists(config: Any, prefix: str = "", depth: int = 0) -> Iterator[tuple[str, Any, list[Any]]]:
    """(dotted path, owner, value) of every list/tuple field of ``config`` and its sub-configs."""
    for name, value in sorted(vars(config).items()):
        if name.startswith("_"):
            continue
        if is_config(value) and depth < 3:
            yield from _lists(value, f"{prefix}{name}.", depth + 1)
        elif isinstance(value, (list, tuple)):
            yield f"{prefix}{name}", config, list(value)


def _candidates(config: Any, kept: list[int]) -> list[str]:
    """Integer fields that may count the layers: named like a layer count first, then any other large enough."""
    fields = [(path, v) for path, v in int_fields(config)
              if "[" not in path and v > len(kept) and v > max(kept, default=-1)]
    return [p for p, _ in sorted(fields, key=lambda f: (not _COUNT.fullmatch(f[0].rsplit(".", 1)[-1]), f[0]))]


def _owner(config: Any, path: str) -> tuple[Any, str]:
    *parents, name = path.split(".")
    for part in parents:
        config = getattr(config, part)
    return config, name


def _rewrite_(config: Any, field: str, kept: list[int]) -> None:
    """``field`` = the new count, and every list of the old count in the same (sub-)config filtered to ``kept``."""
    owner, name = _owner(config, field)
    old = getattr(owner, name)
    setattr(owner, name, len(kept))
    for path, holder, values in _lists(owner):
        if len(values) == old and holder is owner:
            attr = path.rsplit(".", 1)[-1]
            setattr(holder, attr, type(getattr(holder, attr))(values[i] for i in kept))


def after_drop(model: nn.Module, container: str, kept: list[int]) -> None:
    config: Any = getattr(model, "config", None)
    if config is None or not isinstance(model, PreTrainedModel):
        return
    want = observe(model).shapes
    tried: list[str] = []
    for field in _candidates(config, kept):
        trial = copy.deepcopy(config)
        _rewrite_(trial, field, kept)
        try:
            fresh = observe(build_meta(type(model), reloaded_config(trial))).shapes
        except Exception as exc:  # the rewritten config is rejected: try the next field
            tried.append(f"{field}: {str(exc).strip().splitlines()[-1][:120] if str(exc).strip() else type(exc).__name__}")
            continue
        if fresh == want:
            _rewrite_(config, field, kept)  # in place: modules hold this config (and its sub-configs)
            _warn_layer_scaled(config)
            return
        extra = sorted(set(fresh) ^ set(want))
        tried.append(f"{field}: {len(extra)} tensors differ (e.g. {extra[0] if extra else 'a shape'})")
    raise ConfigRewriteError(
        f"dropping blocks of {container!r} (keeping {kept}) cannot be written into {type(config).__name__}: no "
        f"layer count and per-layer lists rebuild the model without them ({'; '.join(tried[:3]) or 'no candidate'}); "
        "a stock from_pretrained would re-create or reject those blocks, so the drop is refused. Prune widths "
        "instead, or drop layers of a model you save and load with secateurs.save()/secateurs.load() only "
        "(e.g. wrap it so it is not a PreTrainedModel)")


def _warn_layer_scaled(config: Any) -> None:
    if getattr(config, "scale_attn_by_inverse_layer_idx", False):
        warnings.warn("config.scale_attn_by_inverse_layer_idx is set: attention scales depend on each layer's index, "
                      "which changed when layers were dropped, so the pruned model computes a different function",
                      stacklevel=2)


register_depth_adapter(PreTrainedModel)(DepthAdapter(find, after_drop))
