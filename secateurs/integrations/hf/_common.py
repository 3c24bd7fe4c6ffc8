"""Shared helpers of the Hugging Face families: the family registry and config sync.

A family says which attention and MLP classes it has, how to read their widths back from the
(already pruned) modules, and which config attribute stores each width. After surgery the
handler of the root ``PreTrainedModel`` writes every width that is uniform across layers and
that the config can express back into ``model.config``, so ``save_pretrained`` and
``from_pretrained`` rebuild the pruned shapes.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from secateurs.errors import ApplyError
from secateurs.registry import Registry

#: canonical width names, in the order they are written to the config
WIDTHS = ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "head_dim")


@dataclass(frozen=True)
class Heads:
    """Widths of one attention module after pruning."""

    num_heads: int
    num_key_value_heads: int
    head_dim: int


@dataclass(frozen=True)
class Family:
    """How one transformers model family stores its widths.

    ``extra_fields(model)`` gives family-specific config values to write as they are (OPT's
    ``word_embed_proj_dim``). ``layers`` names the decoder/encoder layer list relative to ``model.base_model`` (layer dropping).
    ``config_fields`` maps a canonical width name to the config attribute that holds it; a name
    missing from it cannot be expressed by that config. ``derived_head_dim`` is True when the
    modeling code computes ``head_dim`` as ``hidden_size // num_attention_heads`` (BERT, GPT-2):
    head counts are then written only when that division gives the pruned ``head_dim``.
    """

    model_types: tuple[str, ...]
    attention: tuple[type, ...]
    heads: Callable[[Any], Heads]
    mlp: tuple[type, ...]
    intermediate: Callable[[Any], int]
    hidden: Callable[[nn.Module], int]
    config_fields: dict[str, str] = field(default_factory=dict)
    derived_head_dim: bool = False
    layers: str = ""  # path of the block list under the base model (``"layers"``, ``"h"``, ``"encoder.layer"``)
    extra_fields: Callable[[nn.Module], dict[str, int]] | None = None  # other config attributes, read from modules


FAMILIES: Registry[Family] = Registry("Hugging Face family")


def register_family(family: Family) -> Family:
    for t in family.model_types:
        FAMILIES.add(t, family)
    return family


def split_heads(width: int, head_dim: int, where: Any, what: str) -> int:
    """``width`` channels as a whole number of heads of ``head_dim``; an ApplyError otherwise."""
    if head_dim <= 0 or width % head_dim:
        raise ApplyError(
            f"{type(where).__name__}: {what} has {width} channels, not a whole number of heads of head_dim "
            f"{head_dim}; prune whole heads, or prune the head_dim groups of q, k and v together"
        )
    return width // head_dim


def embedding_width(model: Any) -> int:
    """Hidden size as the width of the input embeddings (the start of the residual stream)."""
    return int(model.get_input_embeddings().weight.shape[1])


def widths(model: nn.Module, family: Family) -> dict[str, list[int]]:
    """Per-layer values of each canonical width, read from the modules' (new) shapes."""
    out: dict[str, list[int]] = {k: [] for k in WIDTHS}
    for m in model.modules():
        if isinstance(m, family.attention):
            h = family.heads(m)
            out["num_attention_heads"].append(h.num_heads)
            out["num_key_value_heads"].append(h.num_key_value_heads)
            out["head_dim"].append(h.head_dim)
        elif isinstance(m, family.mlp):
            out["intermediate_size"].append(family.intermediate(m))
    out["hidden_size"] = [family.hidden(model)]
    return out


def sync_config_(model: nn.Module) -> None:
    """Write the uniform widths of ``model`` into ``model.config``; warn about those it cannot express."""
    config = getattr(model, "config", None)
    family = FAMILIES.find(getattr(config, "model_type", ""))
    if config is None:
        return
    if family is None:
        warnings.warn(
            f"no secateurs adapter for model_type {getattr(config, 'model_type', '')!r}: the modules were pruned by the "
            "generic engine, but the config is not rewritten, so save_pretrained() output will not reload with the "
            "stock class; save with secateurs.save() and rebuild with secateurs.load() instead",
            stacklevel=2,
        )
        return
    values = widths(model, family)
    new: dict[str, int] = {}
    problems: list[str] = []
    head_dims = set(values["head_dim"])
    for name in WIDTHS:
        seen = sorted(set(values[name]))
        attr = family.config_fields.get(name)
        if not seen or attr is None:
            continue
        old = getattr(config, attr, None)
        if len(seen) > 1:
            problems.append(f"{name} differs across layers ({seen[0]}..{seen[-1]}); config.{attr} left at {old}")
            continue
        new[name] = seen[0]
    if family.derived_head_dim and {"hidden_size", "num_attention_heads"} <= new.keys() and len(head_dims) == 1:
        hidden, heads, head_dim = new["hidden_size"], new["num_attention_heads"], next(iter(head_dims))
        if hidden % heads or hidden // heads != head_dim:
            problems.append(
                f"{type(config).__name__} derives head_dim as hidden_size // num_attention_heads, which cannot "
                f"give {heads} heads of {head_dim} with hidden_size {hidden}; config.{family.config_fields['num_attention_heads']} "
                "left unchanged"
            )
            new.pop("num_attention_heads")
    for name, value in new.items():
        attr = family.config_fields[name]
        if name == "head_dim" and getattr(config, attr, None) is None and value == new.get("hidden_size", 0) // max(
                new.get("num_attention_heads", 1), 1):
            continue  # the config derives it (ViT): do not add a field that says nothing new
        setattr(config, attr, value)
    for attr, value in (family.extra_fields(model) if family.extra_fields is not None else {}).items():
        setattr(config, attr, value)
    if not problems:
        problems = _rebuild_mismatches(model)
    if problems:
        warnings.warn(
            f"pruned {config.model_type} model: " + "; ".join(problems)
            + ". The pruned model runs, but a save_pretrained() checkpoint will not rebuild it with the stock class.",
            stacklevel=2,
        )


def _rebuild_mismatches(model: nn.Module) -> list[str]:
    """Build the model from its config on the meta device and list the tensors whose shapes differ."""
    config: Any = copy.deepcopy(getattr(model, "config", None))
    try:
        if callable(getattr(config, "validate", None)):  # transformers 5 validates on save and load
            config.validate()
        with torch.device("meta"):
            fresh = type(model)(config)  # type: ignore[call-arg]
    except Exception as exc:  # any error from foreign code: report it, do not fail the surgery
        message = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        return [f"the rewritten config is rejected by transformers ({message}); when pruning the hidden size, pass "
                "round_to= a multiple of the head count so the kept width divides evenly"]
    want = {k: tuple(v.shape) for k, v in model.state_dict(keep_vars=True).items()}
    got = {k: tuple(v.shape) for k, v in fresh.state_dict(keep_vars=True).items()}
    prefix = getattr(model, "base_model_prefix", "")
    bad = [f"{k.removeprefix(prefix + '.')} {got.get(k)} vs pruned {v}" for k, v in want.items() if got.get(k) != v]
    if bad:
        return [f"a model built from the config differs in {len(bad)} tensors (e.g. {'; '.join(bad[:3])})"]
    fresh_modules = dict(fresh.named_modules())
    for name, m in model.named_modules():
        scale, fresh_scale = getattr(m, "scaling", None), getattr(fresh_modules.get(name), "scaling", None)
        if isinstance(scale, float) and isinstance(fresh_scale, float) and abs(scale - fresh_scale) > 1e-12 * abs(scale):
            return [f"head_dim was pruned, and transformers derives the attention scale from it "
                    f"({name.removeprefix(prefix + '.')}.scaling "
                    f"would be {fresh_scale:.4g} instead of {scale:.4g})"]
    return []


def non_ffn_modules(model: nn.Module) -> list[str]:
    """Names to pass as ``ignore=`` so that a ``"channels"`` ratio prunes FFN neurons only.

    The hidden-size group couples every block through the residual stream, starting at the input
    embeddings, and a pooler (BERT, ViT) has its own channels group; ignoring those modules leaves
    the FFN groups as the only eligible ``channels`` groups.
    """
    get = getattr(model, "get_input_embeddings", None)
    embeddings = get() if callable(get) else None
    weight = getattr(embeddings, "weight", None)
    names = [name for name, m in model.named_modules()  # the embeddings and any module tied to them (lm_head)
             if m is embeddings or (weight is not None and getattr(m, "weight", None) is weight)]
    if not names:
        raise LookupError(f"{type(model).__name__} has no input embeddings to anchor the hidden size on")
    names += [name for name, _ in model.named_modules() if name.rsplit(".", 1)[-1] == "pooler"]
    return names
