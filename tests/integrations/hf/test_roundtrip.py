"""End-to-end HF paths: sc.prune, save_pretrained -> from_pretrained, coupling found by analyze, errors."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch

import secateurs as sc
from secateurs.errors import ApplyError
from secateurs.integrations.hf import non_ffn_modules
from secateurs.testing.hf import FFN, GQA_TYPES, HEADS, HIDDEN, KV_HEADS, tiny

transformers = pytest.importorskip("transformers")

GQA_DECODERS = list(GQA_TYPES)


def test_import_secateurs_does_not_import_transformers():
    code = ("import sys, secateurs, secateurs.integrations.hf, secateurs.testing.hf; "
            "assert 'transformers' not in sys.modules, 'transformers imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_prune_llama_gqa_end_to_end():
    t = tiny("llama")
    report = sc.prune(t.model, t.inputs, ratio={"heads": 0.5, "channels": 0.3}, ignore=non_ffn_modules(t.model))
    assert report.verification is not None and report.verification.mode == "exact" and report.verification.ok
    assert report.params_after < report.params_before and report.macs_after < report.macs_before
    cfg = t.model.config
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim) == (HEADS // 2, KV_HEADS // 2, HIDDEN // HEADS)
    assert cfg.intermediate_size == FFN - int(0.3 * FFN) and cfg.hidden_size == HIDDEN
    assert cfg.num_attention_heads % cfg.num_key_value_heads == 0


_SLOW = pytest.mark.slow
_RELOAD = ([pytest.param("llama", {"heads": 0.5, "channels": 0.3})]
           + [pytest.param(t, {"heads": 0.5, "channels": 0.3}, marks=_SLOW) for t in GQA_DECODERS[1:]]
           + [pytest.param("mistral", {"query_heads": 0.5, "channels": 0.3}, marks=_SLOW),
              pytest.param("gpt2", {"channels": 0.3})])


@pytest.mark.parametrize("model_type,ratio", _RELOAD)
def test_save_pretrained_reloads_pruned_model(tmp_path, model_type, ratio):
    t = tiny(model_type)
    sc.prune(t.model, t.inputs, ratio=ratio, ignore=non_ffn_modules(t.model))
    t.model.save_pretrained(tmp_path)
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**t.inputs).logits, t.model(**t.inputs).logits, rtol=0, atol=1e-6)


def test_save_pretrained_reloads_hidden_size_pruning(tmp_path):
    """Stock configs require hidden_size % num_attention_heads == 0: round_to keeps the hidden width a multiple."""
    t = tiny("llama")
    sc.prune(t.model, t.inputs, ratio={"heads": 0.5, "channels": 0.3}, round_to=8)
    assert t.model.config.hidden_size == 48 and t.model.config.intermediate_size == 88
    t.model.save_pretrained(tmp_path)
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**t.inputs).logits, t.model(**t.inputs).logits, rtol=0, atol=1e-6)


def test_config_the_library_rejects_is_a_warning():
    t = tiny("llama")
    with pytest.warns(UserWarning, match="round_to"):  # hidden 45 with 2 heads: narrowed to the heads, and why
        report = sc.prune(t.model, t.inputs, ratio={"heads": 0.5, "channels": 0.3})
    assert report.plan.settings["narrowed"]["kept_whole"] == ["channels"]


@pytest.mark.parametrize("model_type", [t for t in GQA_DECODERS if t != "phi3"])  # fused qkv: test_hf_adapters_more
def test_gqa_coupling(model_type):
    """repeat_kv: a "heads" unit is a whole KV group (its k/v head and the query heads it serves)."""
    t = tiny(model_type)
    analysis = sc.analyze(t.model, t.inputs)
    heads = [g for g in analysis.groups if g.kind == "heads"]
    query = [g for g in analysis.groups if g.kind == "query_heads"]
    ffn = [g for g in analysis.groups if any(m.fqn.endswith("down_proj.weight") and m.dim == 1 for m in g.members)]
    assert len(heads) == len(query) == t.model.config.num_hidden_layers
    head_dim = HIDDEN // HEADS
    for g in heads:
        assert g.n_units == KV_HEADS
        rows = {m.fqn.rsplit(".", 2)[-2]: len(g.member_indices(m, [0])) for m in g.members if m.fqn.endswith("weight")}
        assert rows["k_proj"] == rows["v_proj"] == head_dim
        assert rows["q_proj"] == rows["o_proj"] == head_dim * HEADS // KV_HEADS
    assert all(g.n_units == HEADS // KV_HEADS for g in query)
    assert all(g.n_units == FFN and g.exact for g in ffn) and len(ffn) == len(heads)
    assert "heads" in analysis.summary()


def test_unsupported_head_dim_is_a_clear_error_and_model_is_restored():
    """HF Llama views q, k and v with one head_dim; RoPE q/k head_dim is frozen (inv_freq is rebuilt on load)."""
    t = tiny("llama")
    before = copy.deepcopy(t.model.state_dict())
    with pytest.raises(ApplyError, match="one head_dim for q, k and v"):
        sc.prune(t.model, t.inputs, ratio={"head_dim": 0.5}, valid_heads=False)  # (by default: not planned)
    after = t.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert t.model.config.head_dim == HIDDEN // HEADS


def test_pruned_head_dim_that_changes_the_attention_scale_is_a_warning():
    t = tiny("vit")
    with pytest.warns(UserWarning, match="would also change .*attention:scaling"):
        report = sc.prune(t.model, t.inputs, ratio={"head_dim": 0.25})
    assert report.verification is not None and report.verification.mode == "exact"
    assert all(m.head_dim == 12 for m in t.model.modules() if hasattr(m, "q_proj"))
    assert getattr(t.model.config, "head_dim", None) is None  # no config describes it: left as it was


def test_plan_json_replays_on_a_fresh_hf_model():
    t, fresh = tiny("qwen2"), tiny("qwen2")
    p = sc.plan(t.model, t.inputs, ratio={"heads": 0.5, "channels": 0.3}, ignore=non_ffn_modules(t.model))
    sc.apply(t.model, p)
    sc.apply(fresh.model, sc.Plan.from_json(p.to_json()))
    assert fresh.model.config.to_dict() == t.model.config.to_dict()
    with torch.no_grad():
        torch.testing.assert_close(fresh.model(**t.inputs).logits, t.model(**t.inputs).logits, rtol=0, atol=0)
