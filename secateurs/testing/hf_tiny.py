"""A tiny random model of any transformers model type, built from its config class alone (no downloads).

``tiny_config(model_type)`` shrinks the default config of a type by field name: 2 layers, hidden 192, 8 heads,
4 key/value heads, FFN 256, 4 experts (top-2) of width 96, a vocabulary of 512, with nested sub-configs
(``text_config``, ``vision_config``, ...) shrunk the same way. The sizes are chosen so that removing a quarter of
the heads leaves a count a stock config accepts (6 query heads of 32 divide 192; 3 key/value groups of 2). ``build(model_type)`` makes the base model (``MODEL_MAPPING``)
and example inputs synthesised from its ``forward`` signature. Used by the transformers corpus
(``tests/zoo/test_hf_zoo.py``, ``bench/hf_zoo_table.py``). Importing this module does not import transformers.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

VOCAB = 512

#: field-name pattern -> value of the tiny config (the first match wins; only int fields already set are changed)
SIZES: tuple[tuple[str, int], ...] = (
    (r"(num_)?(hidden_)?layers|n_layers?|num_(encoder|decoder)_layers|(encoder|decoder)_layers|num_decoder_layers", 2),
    (r"num_key_value_heads|num_kv_heads|n_kv_heads?|multi_query_group_num|num_key_value_groups", 4),
    (r"num_attention_heads|n_heads?|num_heads|(encoder|decoder)_attention_heads", 8),
    (r"moe_intermediate_size|shared_expert_intermediate_size|expert_intermediate_size|moe_ffn_hidden_size", 96),
    (r"intermediate_size|ffn_dim|n_inner|d_ff|(encoder|decoder)_ffn_dim|ffn_hidden_size|dim_feedforward", 256),
    (r"hidden_size|d_model|n_embd|embed_dim|model_dim|dim|word_embed_proj_dim|embedding_size", 192),
    (r"head_dim|d_kv|attention_head_size|kv_channels|v_head_dim", 24),
    (r"qk_rope_head_dim|qk_nope_head_dim|rotary_dim", 16),
    (r"kv_lora_rank|q_lora_rank", 64),
    (r"num_local_experts|num_experts|n_routed_experts|moe_num_experts", 4),
    (r"num_experts_per_tok(en)?|moe_topk|top_k|num_selected_experts", 2),
    (r"n_group|num_expert_group|topk_group|n_shared_experts|num_shared_experts", 1),
    (r"first_k_dense_replace|num_sparse_(encoder|decoder)_layers", 1),
    (r"vocab_size", VOCAB),
)
_TOKEN = re.compile(r".*_token_(id|index)$")
#: sizes a config may leave None although the model cannot be built without them (ESM's vocabulary, dots1's experts)
_REQUIRED = re.compile(r"vocab_size|num_local_experts|num_experts|n_routed_experts|num_experts_per_tok|n_shared_experts")
MAX_POSITIONS = 512


def _tiny_value(name: str, value: Any) -> Any:
    if value is None and _REQUIRED.fullmatch(name):
        return next(tiny for pattern, tiny in SIZES if re.fullmatch(pattern, name))
    if isinstance(value, bool) or not isinstance(value, int):
        if name == "depths" and isinstance(value, (list, tuple)) and all(isinstance(v, int) for v in value):
            return [1] * len(value)
        return value
    if _TOKEN.match(name):
        return value if value < VOCAB - 8 else VOCAB - 1 - (hash(name) % 7)
    if name.startswith("max_position") and value > MAX_POSITIONS:
        return MAX_POSITIONS
    for pattern, tiny in SIZES:
        if re.fullmatch(pattern, name):
            return min(value, tiny) if value > 0 else value
    return value


def _sub_class(declared: Any, value: dict[str, Any]) -> type | None:
    """The config class of a nested sub-config: the declared one, or (for ``AutoConfig``) its model_type's."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if isinstance(declared, type) and declared.__name__ != "AutoConfig":
        return declared
    try:
        return CONFIG_MAPPING[str(value.get("model_type"))]
    except KeyError:  # a sub-config without a model_type transformers maps
        return None


def tiny_kwargs(config_class: type, depth: int = 0, defaults: dict[str, Any] | None = None,
                every_kind: bool = True) -> dict[str, Any]:
    """Constructor keywords of a tiny ``config_class`` (sub-configs as dicts of their own tiny keywords);
    ``every_kind``: per-layer lists keep a layer of every kind (else their first entries)."""
    values = config_class().to_dict() if defaults is None else defaults
    out: dict[str, Any] = {}
    sub = getattr(config_class, "sub_configs", {}) or {}
    for name, value in values.items():
        if name in sub and depth < 3 and isinstance(value, dict):
            cls = _sub_class(sub[name], value)
            if cls is not None:
                out[name] = {**value, **tiny_kwargs(cls, depth + 1, value, every_kind)}  # whole: parents' defaults differ
            continue
        new = _tiny_value(name, value)
        if new is not value and new != value:
            out[name] = new
    _keep_mha(values, out)
    _same_head_dims(values, out)
    _same_widths(values, out)
    _per_layer_lists(values, out, every_kind)
    return out


def _same_head_dims(values: dict[str, Any], out: dict[str, Any]) -> None:
    """``head_dim`` equal to another head size by default (DeepSeek's ``qk_rope_head_dim``) stays equal to it."""
    for name, value in values.items():
        if name != "head_dim" and name.endswith("head_dim") and values.get("head_dim") == value and name in out:
            out["head_dim"] = out[name]

_WIDTH = re.compile(r".*(dim|size|channels|features).*")
_HIDDEN = SIZES[5][0]


def _same_widths(values: dict[str, Any], out: dict[str, Any]) -> None:
    """A width field no pattern shrinks whose default equals the hidden size's (WavTokenizer's ``codebook_dim``,
    the last of EfficientLoFTR's ``out_features``) shrinks with it: validators often require them equal."""
    hidden = next((k for k in values if re.fullmatch(_HIDDEN, k) and k in out and isinstance(values[k], int)), None)
    if hidden is None:
        return
    old, new = values[hidden], out[hidden]
    for name, value in values.items():
        if name in out or not _WIDTH.fullmatch(name) or isinstance(value, bool):
            continue
        if isinstance(value, int) and value == old:
            out[name] = new
        elif isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value) \
                and value[-1] == old:
            out[name] = [min(v, new) for v in value]


_KV = ("num_key_value_heads", "num_kv_heads", "n_kv_heads", "n_kv_head")
_HEADS = ("num_attention_heads", "n_head", "n_heads", "num_heads")


def _keep_mha(values: dict[str, Any], out: dict[str, Any]) -> None:
    """A config with as many key/value heads as query heads stays so (some classes refuse GQA)."""
    heads = next((h for h in _HEADS if h in values), None)
    for kv in _KV:
        if heads is not None and kv in values and values[kv] == values[heads] and heads in out:
            out[kv] = out[heads]


def _per_layer_lists(values: dict[str, Any], out: dict[str, Any], every_kind: bool = True) -> None:
    """Lists with one entry per layer (``layer_types``) keep one entry per layer left: the first ones, with the
    first layer of each kind the list has past them in place of the last (DeepSeek-V4's three hash-routed layers
    before the top-k ones, Gemma-3's one global layer in six), so every kind of layer is built."""
    counts = {values[k]: v for k, v in out.items() if k in values and re.fullmatch(SIZES[0][0], k)
              and isinstance(values[k], int)}
    for name, value in values.items():
        if name not in out and isinstance(value, list) and len(value) in counts and len(value) > counts[len(value)]:
            out[name] = _every_kind(value, counts[len(value)]) if every_kind else value[: counts[len(value)]]
    layers = min(counts.values(), default=None)
    for name, value in values.items():  # per-layer overrides keyed by layer index ("05": {...}) keep the layers left
        if layers is not None and name not in out and isinstance(value, dict) and value and all(
                str(k).isdigit() for k in value):
            out[name] = {k: v for k, v in value.items() if int(k) < layers}


def _every_kind(value: list[Any], n: int) -> list[Any]:
    firsts: list[int] = []
    for i, v in enumerate(value):
        if _hashable(v) and all(not _hashable(value[j]) or value[j] != v for j in firsts):
            firsts.append(i)
    late = [i for i in firsts if i >= n][: n - 1]  # the first layer stays
    keep = sorted(set(range(n - len(late))) | set(late))
    return [value[i] for i in keep]


def _hashable(v: Any) -> bool:
    return isinstance(v, str)  # kinds of layer; per-layer numbers keep their first entries


def tiny_config(model_type: str, every_kind: bool = True) -> Any:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    cls = CONFIG_MAPPING[model_type]
    return cls(**tiny_kwargs(cls, every_kind=every_kind))


@dataclass
class TinyModel:
    model_type: str
    model: nn.Module
    inputs: dict[str, Any]


def model_class(model_type: str) -> type:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    found: Any = MODEL_MAPPING[CONFIG_MAPPING[model_type]]
    return found[0] if isinstance(found, (list, tuple)) else found


def _vision_config(config: Any) -> Any:
    return getattr(config, "vision_config", None) or config


def _image_size(config: Any) -> tuple[int, int]:
    size = getattr(_vision_config(config), "image_size", None) or 224
    if isinstance(size, (list, tuple)):
        return int(size[0]), int(size[-1])
    if isinstance(size, dict):
        return int(size.get("height", 224)), int(size.get("width", 224))
    return int(size), int(size)


def _ids(g: torch.Generator, vocab: int, batch: int, seq: int) -> torch.Tensor:
    return torch.randint(3, max(4, min(vocab, VOCAB) - 8), (batch, seq), generator=g)


def _input(name: str, config: Any, g: torch.Generator, batch: int, seq: int) -> torch.Tensor | None:
    """A random value of one standard input, or None when the name is not one this module synthesises."""
    vocab = int(getattr(getattr(config, "text_config", None) or config, "vocab_size", None) or VOCAB)
    if name in ("input_ids", "decoder_input_ids"):
        return _ids(g, vocab, batch, seq if name == "input_ids" else 4)
    if name == "attention_mask":
        return torch.ones(batch, seq, dtype=torch.long)
    if name == "pixel_values":
        c = int(getattr(_vision_config(config), "num_channels", 3) or 3)
        return torch.randn(batch, c, *_image_size(config), generator=g)
    if name == "input_features":
        mels = int(getattr(config, "num_mel_bins", None) or getattr(config, "feature_size", 80) or 80)
        frames = 2 * int(getattr(config, "max_source_positions", 0) or 0) or 64
        return torch.randn(batch, mels, frames, generator=g)
    if name == "input_values":
        return torch.randn(batch, 4000, generator=g)
    return None


def input_candidates(model: nn.Module, seed: int = 0, batch: int = 2, seq: int = 8) -> list[dict[str, Any]]:
    """Example inputs to try in order: the main input (plus decoder ids for an encoder-decoder and
    ``use_cache=False`` where forward() names it), then with pixels, then with an attention mask."""
    g = torch.Generator().manual_seed(seed)
    config: Any = model.config  # type: ignore[union-attr]
    params = inspect.signature(model.forward).parameters
    main = getattr(model, "main_input_name", "input_ids")
    first = _input(main, config, g, batch, seq)
    if first is None:
        raise NotImplementedError(f"main input {main!r}")
    out: dict[str, Any] = {main: first}
    if getattr(config, "is_encoder_decoder", False) and "decoder_input_ids" in params:
        out["decoder_input_ids"] = _input("decoder_input_ids", config, g, batch, seq)
    if "use_cache" in params:  # models taking it through **kwargs get it from secateurs (graph/capture.py)
        out["use_cache"] = False
    found = [dict(out)]
    for extra in ("pixel_values", "attention_mask"):
        if extra in params and extra not in out:
            out[extra] = _input(extra, config, g, batch, seq)
            found.append(dict(out))
    return found


def _randomize_zero_matrices_(model: nn.Module) -> None:
    """Weight matrices some classes initialise to zero (a router gate) get small random values: with all-zero
    router logits every expert ties, and which one top-k picks is arbitrary, so no numerical check could mean
    anything."""
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2 and p.is_floating_point() and not p.is_meta and not p.any():
                p.normal_(0.0, 0.02)


def build(model_type: str, seed: int = 0) -> TinyModel:
    """The tiny base model of ``model_type`` in eval mode, with the first example inputs it runs on: with a layer
    of every kind its per-layer lists name, or, where such a config is refused or the model fails, the first
    layers."""
    try:
        return _build(model_type, seed, every_kind=True)
    except Exception:
        return _build(model_type, seed, every_kind=False)


def _build(model_type: str, seed: int, every_kind: bool) -> TinyModel:
    torch.manual_seed(seed)
    config = tiny_config(model_type, every_kind)
    model = model_class(model_type)(config).eval()
    _randomize_zero_matrices_(model)
    candidates = input_candidates(model, seed)
    for i, inputs in enumerate(candidates):
        try:
            with torch.no_grad():
                model(**inputs)
        except Exception:
            if i == len(candidates) - 1:
                raise
            continue
        return TinyModel(model_type, model, inputs)
    raise AssertionError("unreachable")


def model_types() -> list[str]:
    """Every model type transformers maps to a base model class."""
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

    return sorted(MODEL_MAPPING_NAMES)
