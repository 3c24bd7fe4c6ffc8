"""Shared helpers of the Hugging Face families: the family registry.

A family says which attention and MLP classes it has, how to read their widths back from the
(already pruned) modules (``widths``: reports and tests) and where its layer list is (layer dropping).
Which config fields hold which width is not written here: ``config_sync`` discovers it for any
``PreTrainedModel`` by rebuilding the class from perturbed configs on the meta device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from secateurs.errors import ApplyError
from secateurs.registry import Registry

#: canonical width names (``widths``)
WIDTHS = ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "head_dim")


@dataclass(frozen=True)
class Heads:
    """Widths of one attention module after pruning."""

    num_heads: int
    num_key_value_heads: int
    head_dim: int


@dataclass(frozen=True)
class Family:
    """How one transformers model family stores its widths in its modules.

    ``layers`` names the decoder/encoder layer list relative to ``model.base_model`` (layer dropping).
    """

    model_types: tuple[str, ...]
    attention: tuple[type, ...]
    heads: Callable[[Any], Heads]
    mlp: tuple[type, ...]
    intermediate: Callable[[Any], int]
    hidden: Callable[[nn.Module], int]
    layers: str = ""  # path of the block list under the base model (``"layers"``, ``"h"``, ``"encoder.layer"``)


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
