"""Gemma, Phi-3 and OPT specifics: embedding scale, fused projections, projections around the stream; reloads."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch

import secateurs as sc
from secateurs.integrations.hf import non_ffn_modules
from secateurs.testing.hf import ENCODERS, FFN, HEADS, HIDDEN, KV_HEADS, TINY, tiny

transformers = pytest.importorskip("transformers")
from secateurs.integrations.hf import handlers  # noqa: E402,F401

DECODERS = sorted(set(TINY) - set(ENCODERS))
EXPRESSIBLE_HEADS = [t for t in DECODERS if t not in ("gpt2", "opt")]  # the others derive head_dim from hidden // heads


def reload_same(model, inputs, tmp_path):
    model.save_pretrained(tmp_path)
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, model(**inputs).logits, rtol=0, atol=1e-5)
    prompt = inputs["input_ids"][:, :4]
    out = reloaded.generate(prompt, max_new_tokens=4, do_sample=False, use_cache=True, pad_token_id=0)
    assert out.shape == (prompt.shape[0], 8)
    return reloaded


_NEW = {"gemma", "phi3"}  # the families of this file run by default; the others are covered by test_roundtrip


def _marked(types):
    return [pytest.param(t, marks=() if t in _NEW else pytest.mark.slow) for t in types]


@pytest.mark.parametrize("model_type", _marked(EXPRESSIBLE_HEADS))
def test_heads_and_ffn_reload_with_stock_class(model_type, tmp_path):
    t = tiny(model_type)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the config must express the result
        report = sc.prune(t.model, t.inputs, ratio={"heads": 0.5, "channels": 0.25}, ignore=non_ffn_modules(t.model))
    assert report.verification.ok and report.verification.mode == "exact"
    reloaded = reload_same(t.model, t.inputs, tmp_path)
    assert reloaded.config.num_attention_heads == HEADS // 2


@pytest.mark.parametrize("model_type", _marked(EXPRESSIBLE_HEADS))  # derived head_dim: 4 heads of 16 do not fit 48
def test_ffn_and_hidden_reload_with_stock_class(model_type, tmp_path):
    t = tiny(model_type)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        sc.prune(t.model, t.inputs, ratio={"channels": 0.25}, round_to=16)
    reloaded = reload_same(t.model, t.inputs, tmp_path)
    assert reloaded.config.hidden_size == 48


def test_gemma_hidden_pruning_compensates_the_embedding_scale():
    """embed_scale = sqrt(hidden_size): embeddings scaled by sqrt(h/h'), the tied head undone in the final norm."""
    t = tiny("gemma")
    plan = sc.plan(t.model, t.inputs, ratio={"channels": 0.25}, round_to=16)
    naive = copy.deepcopy(t.model)  # the same slicing with no compensation: what the function must stay
    keep = plan.keep["model.embed_tokens.weight"][1]
    sc.apply(t.model, plan)
    emb = t.model.model.embed_tokens
    assert emb.weight.shape[1] == 48 and emb.scalar_embed_scale == pytest.approx(math.sqrt(48))
    assert float(emb.embed_scale) == pytest.approx(math.sqrt(48))
    c = math.sqrt(HIDDEN / 48)
    with torch.no_grad():
        torch.testing.assert_close(emb.weight, naive.model.embed_tokens.weight[:, keep] * c)
        final = t.model.model.norm.weight
        torch.testing.assert_close(1 + final, (1 + naive.model.norm.weight[keep]) / c)
    # the function equals the uncompensated pruned model (old scale, unscaled tied weights)
    unscaled = copy.deepcopy(t.model)
    with torch.no_grad():
        unscaled.model.embed_tokens.weight.div_(c)
        unscaled.model.norm.weight.copy_((1 + unscaled.model.norm.weight) * c - 1)
        unscaled.model.embed_tokens.embed_scale.fill_(math.sqrt(HIDDEN))
        torch.testing.assert_close(unscaled(**t.inputs).logits, t.model(**t.inputs).logits, rtol=1e-5, atol=1e-5)


def test_gemma_failed_apply_restores_scale(monkeypatch):
    import secateurs.integrations.hf.gemma as gemma

    def fail(model, hints):
        raise RuntimeError("config sync failed")

    t = tiny("gemma")
    plan = sc.plan(t.model, t.inputs, ratio={"channels": 0.25}, round_to=16)
    monkeypatch.setattr(gemma, "sync_outermost_config_", fail)  # fails right after the embedding was rescaled
    before = copy.deepcopy(t.model.state_dict())
    with pytest.raises(sc.SecateursError, match="config sync failed"):
        sc.apply(t.model, plan)
    emb = t.model.model.embed_tokens
    assert emb.scalar_embed_scale == pytest.approx(math.sqrt(HIDDEN)) and float(emb.embed_scale) == pytest.approx(8.0)
    assert all(torch.equal(before[k], v) for k, v in t.model.state_dict().items())


def test_phi3_fused_projections_are_coupled():
    t = tiny("phi3")
    analysis = sc.analyze(t.model, t.inputs)
    head_dim = HIDDEN // HEADS
    heads = [g for g in analysis.groups if g.kind == "heads"]
    assert len(heads) == 2 and all(g.n_units == KV_HEADS for g in heads)
    for g in heads:  # one KV group: its query heads, its key head and its value head rows of qkv_proj
        qkv = next(m for m in g.members if m.fqn.endswith("qkv_proj.weight") and m.dim == 0)
        rows = g.member_indices(qkv, [0])
        assert len(rows) == head_dim * (HEADS // KV_HEADS + 2)
    ffn = [g for g in analysis.groups if any(m.fqn.endswith("down_proj.weight") and m.dim == 1 for m in g.members)]
    assert len(ffn) == 2 and all(g.n_units == FFN and g.exact for g in ffn)
    for g in ffn:  # unit k removes row k of the gate half and row k of the up half of gate_up_proj
        gu = next(m for m in g.members if m.fqn.endswith("gate_up_proj.weight"))
        assert sorted(g.member_indices(gu, [3])) == [3, FFN + 3]


def test_phi3_heads_rewrite_config_and_head_dim():
    t = tiny("phi3")
    sc.prune(t.model, t.inputs, ratio={"heads": 0.5})
    cfg = t.model.config
    assert (cfg.num_attention_heads, cfg.num_key_value_heads) == (HEADS // 2, KV_HEADS // 2)
    assert cfg.head_dim == HIDDEN // HEADS  # no longer hidden_size // num_attention_heads: written explicitly
    assert all(m.num_key_value_heads == 1 for m in t.model.modules() if type(m).__name__ == "Phi3Attention")


def test_phi3_head_dim_is_refused_and_restored():
    t = tiny("phi3")
    before = copy.deepcopy(t.model.state_dict())
    with pytest.raises(sc.SecateursError, match="one head_dim for q, k and v"):
        sc.prune(t.model, t.inputs, ratio={"head_dim": 0.5})
    assert all(torch.equal(before[k], v) for k, v in t.model.state_dict().items())


def test_opt_with_embedding_projection(tmp_path):
    """word_embed_proj_dim != hidden_size: project_in/out. The embedding width is its own group (embed_tokens,
    project_in, project_out, tied lm_head); the config's word_embed_proj_dim follows it and the model reloads."""
    from secateurs.testing.hf import _opt

    torch.manual_seed(0)
    t = _opt(word_embed_proj_dim=32)
    assert t.model.model.decoder.project_in is not None
    stream = ["model.decoder.embed_positions"]  # keep hidden_size: OPT derives head_dim from it
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        report = sc.prune(t.model, t.inputs, ratio={"channels": 0.25}, ignore=stream)
    assert report.verification.ok and report.verification.mode == "exact"
    cfg = t.model.config
    assert (cfg.hidden_size, cfg.word_embed_proj_dim, cfg.ffn_dim) == (64, 24, 96)
    assert t.model.model.decoder.project_in.weight.shape == (64, 24)
    assert t.model.model.decoder.embed_positions.weight.shape == (64 + 2, 64)  # offset rows kept
    reload_same(t.model, t.inputs, tmp_path)


def test_opt_hidden_size_pruning_keeps_position_rows():
    from secateurs.testing.hf import _opt

    torch.manual_seed(0)
    t = _opt(word_embed_proj_dim=32)
    with pytest.warns(UserWarning, match="derives the head size"):
        report = sc.prune(t.model, t.inputs, ratio={"channels": 0.25}, round_to=8, valid_heads=False)
    assert report.verification.ok
    cfg = t.model.config  # no config describes 4 heads of 16 in a hidden size of 48: left as it was
    assert (cfg.hidden_size, cfg.word_embed_proj_dim) == (64, 32)
    assert t.model.model.decoder.embed_positions.weight.shape == (64 + 2, 48)


def test_opt_heads_only_is_a_warning_not_an_error():
    t = tiny("opt")
    with pytest.warns(UserWarning, match="derives the head size"):
        report = sc.prune(t.model, t.inputs, ratio={"heads": 0.5}, valid_heads=False)  # the counts asked
    assert report.verification.mode == "exact"
    assert all(m.num_heads == 2 for m in t.model.modules() if type(m).__name__ == "OPTAttention")
