"""Where Sheared-LLaMA's masks act in a decoder, and the target shape read as counts per kind of structure.

A layout names, per block, the Linear that writes the attention output to the stream (``o_proj``) and the one that
writes the MLP output (``down_proj``), plus the input embeddings, and the widths read from the config. Layouts are
found through ``LAYOUTS`` (a Registry keyed by model class, MRO lookup); the built-in one serves Hugging Face
decoders with Llama-style attribute names (Llama, Mistral, Qwen2/3, Gemma).

Targets are config fields: ``num_hidden_layers``, ``hidden_size``, ``intermediate_size``, ``num_attention_heads``,
``num_key_value_heads``. Query heads are pruned as secateurs' ``query_heads`` units are: the same position in every
key/value group, so every group keeps ``num_attention_heads / num_key_value_heads`` of them (a target naming only
``num_key_value_heads`` keeps every group's query heads).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from secateurs.errors import InvalidArgumentError, InvalidTypeError, PlanError
from secateurs.graph.blocks import container, find_blocks
from secateurs.registry import Registry
from secateurs.sheared.masks import Structure

FIELDS = ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads")


@dataclass
class Layout:
    blocks_path: str
    embed: nn.Module
    attn_out: list[nn.Module]  # per block: the Linear writing attention to the stream (input: heads x head_dim)
    mlp_out: list[nn.Module]  # per block: the Linear writing the MLP output (input: FFN neurons)
    n_layers: int
    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    head_dim: int

    @property
    def group_size(self) -> int:
        return self.heads // self.kv_heads


LayoutFinder = Callable[[nn.Module], Layout]
LAYOUTS: Registry[LayoutFinder] = Registry("shear layout")
register_layout = LAYOUTS.register


def _attr(block: nn.Module, path: str, where: str) -> nn.Module:
    try:
        return block.get_submodule(path)
    except AttributeError:
        raise PlanError(f"sc.shear: block {where} has no {path!r}; register a layout for this model class with "
                        "secateurs.sheared.register_layout") from None


@register_layout("transformers.modeling_utils.PreTrainedModel")
def llama_like(model: nn.Module) -> Layout:
    config: Any = getattr(model, "config", None)
    path = find_blocks(model)
    blocks = list(container(model, path))
    attn = [_attr(b, "self_attn.o_proj", f"{path}.{i}") for i, b in enumerate(blocks)]
    mlp = [_attr(b, "mlp.down_proj", f"{path}.{i}") for i, b in enumerate(blocks)]
    heads = int(config.num_attention_heads)
    kv = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    embed = model.get_input_embeddings()  # type: ignore[operator]
    return Layout(path, embed, attn, mlp, len(blocks), int(config.hidden_size), int(config.intermediate_size),
                  heads, kv, head_dim)


def find_layout(model: nn.Module) -> Layout:
    finder = LAYOUTS.for_type(type(model))
    if finder is None:
        raise PlanError(f"sc.shear has no layout for {type(model).__name__}: it learns masks on Hugging Face decoders "
                        "with Llama-style attention and MLP; register one with secateurs.sheared.register_layout")
    return finder(model)


def structures(layout: Layout, target: Mapping[str, int]) -> list[Structure]:
    """The structures ``target`` constrains, checked against the model (a smaller or equal, consistent shape)."""
    if not isinstance(target, Mapping) or not target:
        raise InvalidTypeError("target must be a dict of config field -> value, e.g. {'num_hidden_layers': 3, "
                               f"'intermediate_size': 160}}; fields: {', '.join(FIELDS)}")
    unknown = sorted(set(target) - set(FIELDS))
    if unknown:
        raise InvalidArgumentError(f"unknown target fields {unknown}; sc.shear prunes {', '.join(FIELDS)}")
    full = {"num_hidden_layers": layout.n_layers, "hidden_size": layout.hidden, "intermediate_size": layout.ffn,
            "num_attention_heads": layout.heads, "num_key_value_heads": layout.kv_heads}
    want = {k: full[k] for k in FIELDS} | dict(target)
    if "num_attention_heads" not in target and isinstance(want["num_key_value_heads"], int):
        want["num_attention_heads"] = want["num_key_value_heads"] * layout.group_size  # groups keep their queries
    for k, v in want.items():
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= full[k]:
            raise InvalidArgumentError(f"target {k}={v!r} must be an integer from 1 to the model's {full[k]}")
    kv, heads = want["num_key_value_heads"], want["num_attention_heads"]
    if heads % kv or heads // kv > layout.group_size:
        raise InvalidArgumentError(
            f"target num_attention_heads={heads} with num_key_value_heads={kv}: every key/value group keeps "
            f"{heads}/{kv} query heads, which must be a whole number of at most the model's {layout.group_size}")
    out = [Structure("layers", layout.n_layers, want["num_hidden_layers"], False),
           Structure("hidden", layout.hidden, want["hidden_size"], False),
           Structure("ffn", layout.ffn, want["intermediate_size"], True),
           Structure("kv_heads", layout.kv_heads, kv, True),
           Structure("query_heads", layout.group_size, heads // kv, True)]
    return [s for s in out if s.target < s.full]
