"""Per-layer (heterogeneous) widths, saved with sc.save and rebuilt by sc.load; a model_type without an adapter."""

from __future__ import annotations

import warnings

import pytest
import torch

import secateurs as sc
from secateurs.integrations.hf import non_ffn_modules
from secateurs.io.saving import PLAN, WEIGHTS
from secateurs.testing.hf import FFN, HIDDEN, KV_HEADS, VOCAB, tiny, token_batches

transformers = pytest.importorskip("transformers")


def test_per_layer_widths_round_trip_through_sc_save_load(tmp_path):
    t = tiny("llama", layers=3)
    ratio = {"channels": 0.25}
    overrides = {"model.layers.1.mlp": 0.5}  # layer 1 loses half its FFN, the others a quarter
    with pytest.warns(UserWarning, match="differs across layers"):
        report = sc.prune(t.model, t.inputs, ratio=ratio, ignore=non_ffn_modules(t.model), overrides=overrides)
    assert report.verification.ok and report.verification.mode == "exact"
    layers = t.model.model.layers
    assert [layer.mlp.down_proj.in_features for layer in layers] == [96, 64, 96]
    assert t.model.config.intermediate_size == FFN  # not expressible by the stock config
    sc.save(t.model, report.plan, tmp_path / "hetero")
    assert (tmp_path / "hetero" / WEIGHTS).read_bytes()[:1] != b"\x80" and (tmp_path / "hetero" / PLAN).is_file()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the same "differs across layers" note on rebuild
        loaded = sc.load(tmp_path / "hetero", model_factory=lambda: tiny("llama", layers=3).model)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**t.inputs).logits, t.model(**t.inputs).logits, rtol=0, atol=0)
    prompt = t.inputs["input_ids"][:, :4]
    cached = loaded.generate(prompt, max_new_tokens=4, do_sample=False, use_cache=True, pad_token_id=0)
    assert torch.equal(cached, loaded.generate(prompt, max_new_tokens=4, do_sample=False, use_cache=False, pad_token_id=0))


def test_global_scope_gives_per_layer_head_counts(tmp_path):
    """Global ranking of 4 KV groups over 2 layers removes 1: one layer keeps 2, the other 1 (with its query heads)."""
    t = tiny("qwen2")
    with pytest.warns(UserWarning, match="differs across layers"):
        report = sc.prune(t.model, t.inputs, ratio={"heads": 0.25}, scope="global")
    assert report.verification.ok and report.verification.mode == "exact"
    attn = [layer.self_attn for layer in t.model.model.layers]
    assert sorted(a.k_proj.out_features // a.head_dim for a in attn) == [1, KV_HEADS]
    assert all(a.num_key_value_groups == 2 for a in attn)
    sc.save(t.model, report.plan, tmp_path / "global")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        loaded = sc.load(tmp_path / "global", model_factory=lambda: tiny("qwen2").model)
        replay = tiny("qwen2").model
        sc.apply(replay, sc.Plan.from_json(report.plan.to_json()))
    with torch.no_grad():
        want = t.model(**t.inputs).logits
        torch.testing.assert_close(loaded(**t.inputs).logits, want, rtol=0, atol=0)
        torch.testing.assert_close(replay(**t.inputs).logits, want, rtol=0, atol=0)
    prompt = t.inputs["input_ids"][:, :4]
    cached = loaded.generate(prompt, max_new_tokens=4, do_sample=False, use_cache=True, pad_token_id=0)
    assert torch.equal(cached, loaded.generate(prompt, max_new_tokens=4, do_sample=False, use_cache=False, pad_token_id=0))


def _olmo():
    from transformers import OlmoConfig, OlmoForCausalLM

    torch.manual_seed(0)
    config = OlmoConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=FFN, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0,
                        bos_token_id=1, eos_token_id=2)
    return OlmoForCausalLM(config).eval()


def test_model_type_without_adapter_gets_its_config_rewritten(tmp_path):
    """No adapter for OLMo: config discovery finds intermediate_size, so the stock class reloads the pruned model."""
    from transformers import OlmoForCausalLM

    from secateurs.integrations.hf._common import FAMILIES

    assert "olmo" not in FAMILIES.entries()
    model = _olmo()
    inputs = {"input_ids": token_batches(1)[0]["input_ids"], "use_cache": False}
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        report = sc.prune(model, inputs, ratio={"channels": 0.25}, ignore=non_ffn_modules(model))
    assert report.verification.ok and report.verification.mode == "exact"
    assert all(layer.mlp.down_proj.in_features == 96 for layer in model.model.layers)
    assert model.config.intermediate_size == 96
    model.save_pretrained(tmp_path / "olmo")
    loaded = OlmoForCausalLM.from_pretrained(tmp_path / "olmo").eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, model(**inputs).logits, rtol=0, atol=0)
