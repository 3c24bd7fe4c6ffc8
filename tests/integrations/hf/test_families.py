"""Every registered Hugging Face family: heads, FFN and hidden-size pruning on a tiny random model.

One export per family (module-scoped analysis); each case prunes a fresh copy, verifies it against
the masked original, and checks module attributes, config fields and (for decoders) generate().
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Any

import pytest
import torch

import secateurs as sc
from secateurs.graph.analysis import Analysis
from secateurs.integrations.hf import non_ffn_modules
from secateurs.testing.hf import FFN, GQA_TYPES, HEADS, HIDDEN, KV_HEADS, TINY, TinyHF, tiny

pytest.importorskip("transformers")
from secateurs.integrations.hf import handlers  # noqa: E402,F401  (registers the families)
from secateurs.integrations.hf._common import FAMILIES, widths  # noqa: E402

MODEL_TYPES = sorted(TINY)
DERIVED = {"bert", "gpt2", "opt"}  # configs that compute head_dim = hidden_size // num_attention_heads
#: the config field of a width where it is not named as the width (config discovery finds them)
FIELD = {("gpt2", "intermediate_size"): "n_inner", ("gpt2", "hidden_size"): "n_embd", ("opt", "intermediate_size"): "ffn_dim"}


def field_of(model_type: str, width: str) -> str:
    return FIELD.get((model_type, width), width)


@dataclass
class Case:
    tiny: TinyHF
    analysis: Analysis


_CACHE: dict[str, Case] = {}


def case(model_type: str) -> Case:
    if model_type not in _CACHE:
        t = tiny(model_type)
        _CACHE[model_type] = Case(t, sc.analyze(t.model, t.inputs))
    return _CACHE[model_type]


def prune_copy(model_type: str, ratio: Any, ignore: Any = None, reexport: bool = False, round_to: int = 1,
               valid_heads: bool = True):
    c = case(model_type)
    model = copy.deepcopy(c.tiny.model)
    plan = sc.plan(model, c.tiny.inputs, ratio=ratio, ignore=ignore, analysis=c.analysis, round_to=round_to,
                   valid_heads=valid_heads)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sc.apply(model, plan)
    result = sc.verify(c.tiny.model, model, plan, c.tiny.inputs, reexport=reexport)
    assert result.ok, result.message
    config_warnings = [str(w.message) for w in caught if "save_pretrained()" in str(w.message)]
    return model, plan, result, config_warnings


def layer_widths(model_type: str, model: torch.nn.Module) -> dict[str, set[int]]:
    return {k: set(v) for k, v in widths(model, FAMILIES.entries()[model_type]).items()}


def check_config_rebuilds(model: torch.nn.Module) -> None:
    """A fresh model built from the rewritten config has exactly the pruned shapes."""
    fresh = type(model)(copy.deepcopy(model.config))
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in fresh.state_dict().items()}
    assert got == want


def check_generate(model: torch.nn.Module, inputs: dict[str, Any]) -> None:
    prompt = inputs["input_ids"][:, :4]
    with_cache = model.generate(prompt, max_new_tokens=4, do_sample=False, use_cache=True, pad_token_id=0)
    no_cache = model.generate(prompt, max_new_tokens=4, do_sample=False, use_cache=False, pad_token_id=0)
    assert with_cache.shape == (prompt.shape[0], prompt.shape[1] + 4)
    assert torch.equal(with_cache, no_cache)


def test_every_registered_family_has_a_tiny_model():
    assert set(FAMILIES.entries()) <= set(TINY), f"add a tiny model to secateurs.testing.hf.TINY for {set(FAMILIES.entries()) - set(TINY)}"


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_heads(model_type):
    c = case(model_type)
    # a config deriving the head size can write no other head count: the counts asked, to test the surgery
    model, plan, result, warned = prune_copy(model_type, {"heads": 0.5}, reexport=True,
                                             valid_heads=model_type not in DERIVED)
    assert result.mode == "exact" and result.reexported
    assert {g.kind for g in plan.groups if g.removed} == {"heads"}
    w = layer_widths(model_type, model)
    if c.tiny.gqa:  # whole KV groups go: their query heads with them
        assert w["num_key_value_heads"] == {KV_HEADS // 2} and w["num_attention_heads"] == {HEADS // 2}
    else:
        assert w["num_attention_heads"] == {HEADS // 2}
    assert w["head_dim"] == {HIDDEN // HEADS} and w["intermediate_size"] == {FFN} and w["hidden_size"] == {HIDDEN}
    _check_attention_attributes(model_type, model)
    if model_type in DERIVED:  # head_dim = hidden // heads: the config cannot say "2 heads of 16 in 64"
        assert warned
    else:
        assert not warned
        assert model.config.num_attention_heads == HEADS // 2
        check_config_rebuilds(model)
    if c.tiny.decoder:
        check_generate(model, c.tiny.inputs)


@pytest.mark.parametrize("model_type", GQA_TYPES)
def test_query_heads_within_kv_groups(model_type):
    c = case(model_type)
    model, plan, result, warned = prune_copy(model_type, {"query_heads": 0.5})
    assert result.mode == "exact" and not warned
    cfg = model.config
    assert (cfg.num_attention_heads, cfg.num_key_value_heads) == (KV_HEADS, KV_HEADS)
    assert cfg.num_attention_heads % cfg.num_key_value_heads == 0
    for m in model.modules():
        if hasattr(m, "num_key_value_groups"):
            assert m.num_key_value_groups == 1
    check_config_rebuilds(model)
    check_generate(model, c.tiny.inputs)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_ffn_only(model_type):
    """``channels`` with the input embeddings ignored prunes FFN neurons and keeps the hidden size."""
    c = case(model_type)
    model, plan, result, warned = prune_copy(model_type, {"channels": 0.3}, ignore=non_ffn_modules(c.tiny.model))
    assert result.mode == "exact" and not warned
    kept = FFN - int(0.3 * FFN)
    w = layer_widths(model_type, model)
    assert w["intermediate_size"] == {kept} and w["hidden_size"] == {HIDDEN}
    assert getattr(model.config, field_of(model_type, "intermediate_size")) == kept
    check_config_rebuilds(model)
    if c.tiny.decoder:
        check_generate(model, c.tiny.inputs)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_hidden_and_ffn(model_type):
    """Hidden size goes through LayerNorm/RMSNorm: verified structurally (runs, shapes), not numerically."""
    c = case(model_type)
    model, plan, result, warned = prune_copy(model_type, {"channels": 0.3}, round_to=8,
                                             valid_heads=model_type not in DERIVED)  # as in test_heads
    assert result.mode == "structural"
    hidden = 48  # 64 - 19, rounded to a multiple of 8 (stock configs want hidden_size % num_attention_heads == 0)
    w = layer_widths(model_type, model)
    assert w["hidden_size"] == {hidden}
    written = getattr(model.config, field_of(model_type, "hidden_size"))
    assert written == (HIDDEN if model_type in DERIVED else hidden)  # a config that cannot describe it is kept
    for m in model.modules():
        if isinstance(m, torch.nn.LayerNorm):
            assert m.normalized_shape == (hidden,)
    if model_type in DERIVED:
        assert warned  # 4 heads of 16 no longer fit hidden_size // num_attention_heads
    else:
        assert not warned
        check_config_rebuilds(model)
    out = model(**c.tiny.inputs)[0]
    assert out.shape == c.tiny.model(**c.tiny.inputs)[0].shape
    if c.tiny.decoder:
        check_generate(model, c.tiny.inputs)


def _check_attention_attributes(model_type: str, model: torch.nn.Module) -> None:
    """The attributes each family's forward reads agree with the new projection shapes."""
    for m in model.modules():
        name = type(m).__name__
        if name == "Conv1D":
            assert (m.nx, m.nf) == tuple(m.weight.shape)
        elif name == "GPT2Attention":
            assert m.split_size == m.num_heads * m.head_dim == m.c_attn.nf // 3 == m.c_proj.nx
            assert m.embed_dim == m.c_proj.nf
        elif name == "BertSelfAttention":
            assert m.all_head_size == m.num_attention_heads * m.attention_head_size == m.query.out_features
        elif name == "ViTAttention":
            assert m.num_attention_heads * m.head_dim == m.q_proj.out_features == m.o_proj.in_features
        elif name == "Phi3Attention":
            n_q = m.o_proj.in_features // m.head_dim
            assert m.qkv_proj.out_features == (n_q + 2 * m.num_key_value_heads) * m.head_dim
            assert m.num_key_value_groups == n_q // m.num_key_value_heads and model.config.num_attention_heads == n_q
        elif name == "OPTAttention":
            assert m.num_heads * m.head_dim == m.q_proj.out_features == m.out_proj.in_features
        elif name.endswith("Attention") and hasattr(m, "num_key_value_groups"):
            n_q, n_kv = m.q_proj.out_features // m.head_dim, m.k_proj.out_features // m.head_dim
            assert m.num_key_value_groups == n_q // n_kv and n_q % n_kv == 0
            assert m.o_proj.in_features == m.q_proj.out_features
