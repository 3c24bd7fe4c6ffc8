"""Dropping whole decoder/encoder layers of Hugging Face models: config, layer_idx, KV cache, reload, replay."""

from __future__ import annotations

import copy

import pytest
import torch

import secateurs as sc
from secateurs.integrations.hf import non_ffn_modules
from secateurs.testing.hf import TINY, tiny, token_batches

transformers = pytest.importorskip("transformers")
from secateurs.integrations.hf import handlers  # noqa: E402,F401  (registers the families)
from secateurs.integrations.hf._common import FAMILIES  # noqa: E402


def layer_list(model):
    base = model.base_model
    path = FAMILIES.entries()[model.config.model_type].layers
    return base.get_submodule(path)


def check_generate(model, ids):
    prompt = ids[:, :4]
    with_cache = model.generate(prompt, max_new_tokens=5, do_sample=False, use_cache=True, pad_token_id=0)
    no_cache = model.generate(prompt, max_new_tokens=5, do_sample=False, use_cache=False, pad_token_id=0)
    assert with_cache.shape == (prompt.shape[0], prompt.shape[1] + 5)
    assert torch.equal(with_cache, no_cache)


def test_every_family_names_its_layer_list():
    for model_type, family in FAMILIES.entries().items():
        assert family.layers, f"family {model_type!r} does not name its layer list (Family.layers)"


_FAST = {"llama", "gpt2", "bert", "opt"}  # the rest of the registry runs with -m slow


@pytest.mark.parametrize("model_type", [pytest.param(t, marks=() if t in _FAST else pytest.mark.slow) for t in sorted(TINY)])
def test_drop_one_layer_every_family(model_type):
    t = tiny(model_type, layers=3)
    report = sc.prune(t.model, t.inputs, drop_layers=1, calibration=[t.inputs])
    v = report.verification
    assert v is not None and v.ok and v.mode == "exact", v and v.message
    assert len(layer_list(t.model)) == 2 and t.model.config.num_hidden_layers == 2
    assert report.params_after < report.params_before
    for j, layer in enumerate(layer_list(t.model)):  # cache slots follow the new positions
        assert all(m.layer_idx == j for m in layer.modules() if isinstance(getattr(m, "layer_idx", None), int))
    fresh = type(t.model)(copy.deepcopy(t.model.config))
    assert {k: v.shape for k, v in fresh.state_dict().items()} == {k: v.shape for k, v in t.model.state_dict().items()}
    if t.decoder:
        check_generate(t.model, t.inputs["input_ids"])


def test_llama_block_influence_matches_hidden_states():
    """The scores are 1 - cos between consecutive hidden states that HF itself reports."""
    t = tiny("llama", layers=4)
    batches = token_batches()
    p = sc.plan(t.model, t.inputs, drop_layers=1, layer_importance="block_influence", calibration=batches)
    want = torch.zeros(4, dtype=torch.float64)
    with torch.no_grad():
        for b in batches:
            hs = t.model(**b, output_hidden_states=True).hidden_states  # the last one is after the final norm
            for i in range(3):
                want[i] += (1 - torch.cosine_similarity(hs[i].double(), hs[i + 1].double(), dim=-1)).mean()
    record = p.settings["drop_layers"]
    assert record["container"] == "model.layers" and p.dropped_layers == {"model.layers": record["dropped"]}
    assert record["scores"][:3] == pytest.approx((want[:3] / len(batches)).tolist(), rel=1e-6)
    assert record["dropped"] == [int(torch.tensor(record["scores"]).argmin())]


def test_padding_tokens_do_not_count():
    """Block influence averages over the tokens an attention_mask keeps (left padding here)."""
    t = tiny("llama", layers=3)
    ids = token_batches(1)[0]["input_ids"]
    mask = torch.ones_like(ids)
    mask[0, :3] = 0
    batch = {"input_ids": ids, "attention_mask": mask}
    p = sc.plan(t.model, t.inputs, drop_layers=1, calibration=[batch])
    with torch.no_grad():
        hs = t.model(**batch, output_hidden_states=True).hidden_states
    w = mask.double()
    want = [float(((1 - torch.cosine_similarity(hs[i].double(), hs[i + 1].double(), dim=-1)) * w).sum() / w.sum())
            for i in range(2)]
    assert p.settings["drop_layers"]["scores"][:2] == pytest.approx(want, rel=1e-6)


def test_llama_angular_window_and_kv_cache():
    t = tiny("llama", layers=4)
    original = copy.deepcopy(t.model)
    report = sc.prune(t.model, t.inputs, drop_layers=2, layer_importance="angular", calibration=token_batches())
    dropped = report.plan.dropped_layers["model.layers"]
    scores = report.plan.settings["drop_layers"]["scores"]
    assert len(scores) == 3 and dropped == [int(torch.tensor(scores).argmin()), int(torch.tensor(scores).argmin()) + 1]
    assert report.verification.mode == "exact" and report.verification.ok
    assert t.model.config.num_hidden_layers == 2
    kept = [i for i in range(4) if i not in dropped]
    for j, i in enumerate(kept):  # the kept layers are the same modules, renumbered
        torch.testing.assert_close(t.model.model.layers[j].mlp.down_proj.weight,
                                   original.model.layers[i].mlp.down_proj.weight, rtol=0, atol=0)
        assert t.model.model.layers[j].self_attn.layer_idx == j
    check_generate(t.model, t.inputs["input_ids"])


def test_layer_types_follow_the_kept_layers():
    from secateurs.testing.hf import FFN, HEADS, HIDDEN, KV_HEADS, VOCAB

    types = ["full_attention", "sliding_attention", "full_attention", "sliding_attention"]
    torch.manual_seed(0)
    config = transformers.Qwen2Config(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=FFN, num_hidden_layers=4,
                                      num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, max_position_embeddings=64,
                                      use_sliding_window=True, sliding_window=4, layer_types=types, pad_token_id=0)
    model = transformers.Qwen2ForCausalLM(config).eval()
    ids = token_batches(1, seq_len=12)[0]["input_ids"]
    report = sc.prune(model, {"input_ids": ids, "use_cache": False}, drop_layers=1, calibration=token_batches())
    assert report.verification.ok and report.verification.mode == "exact"
    gone = report.plan.dropped_layers["model.layers"][0]
    assert model.config.layer_types == [x for i, x in enumerate(types) if i != gone]
    assert [layer.self_attn.layer_type for layer in model.model.layers] == model.config.layer_types
    check_generate(model, ids)


def test_width_and_depth_save_pretrained_reloads(tmp_path):
    """Sheared-LLaMA style: heads, FFN and layers in one plan; stock from_pretrained rebuilds it."""
    t = tiny("llama", layers=4)
    report = sc.prune(t.model, t.inputs, ratio={"heads": 0.5, "channels": 0.25}, ignore=non_ffn_modules(t.model),
                      drop_layers=1, calibration=token_batches())
    assert report.verification.ok and report.verification.mode == "exact"
    cfg = t.model.config
    assert (cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.intermediate_size) == (3, 2, 1, 96)
    t.model.save_pretrained(tmp_path)
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**t.inputs).logits, t.model(**t.inputs).logits, rtol=0, atol=1e-6)
    check_generate(reloaded, t.inputs["input_ids"])


def test_plan_replays_and_sc_save_load(tmp_path):
    t = tiny("mistral", layers=4)
    p = sc.plan(t.model, t.inputs, ratio={"channels": 0.25}, ignore=non_ffn_modules(t.model), drop_layers=2,
                layer_importance="angular", calibration=token_batches())
    sc.apply(t.model, p)
    fresh = tiny("mistral", layers=4)
    sc.apply(fresh.model, sc.Plan.from_json(p.to_json()))
    assert fresh.model.config.to_dict() == t.model.config.to_dict()
    with torch.no_grad():
        torch.testing.assert_close(fresh.model(**t.inputs).logits, t.model(**t.inputs).logits, rtol=0, atol=0)
    sc.save(t.model, p, tmp_path / "saved")
    loaded = sc.load(tmp_path / "saved", model_factory=lambda: tiny("mistral", layers=4).model)
    assert loaded.config.num_hidden_layers == 2
    with torch.no_grad():
        torch.testing.assert_close(loaded(**t.inputs).logits, t.model(**t.inputs).logits, rtol=0, atol=0)


def test_benchmark_call_shape():
    """The call the benchmarks make: input_ids only (no use_cache=False), one layer of a 4-layer Llama."""
    t = tiny("llama", layers=4)
    ids = t.inputs["input_ids"]
    report = sc.prune(t.model, {"input_ids": ids}, drop_layers=1, layer_importance="block_influence",
                      calibration=[{"input_ids": b["input_ids"]} for b in token_batches()])
    assert report.verification.ok and t.model.config.num_hidden_layers == 3


def _stock_reload_same(model, inputs, tmp_path):
    from secateurs.testing.hf_zoo import max_relative_error

    model.save_pretrained(tmp_path)
    fresh = type(model).from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert max_relative_error(model(**inputs), fresh(**inputs)) <= 1e-5


@pytest.mark.parametrize("model_type", ["gpt_neo", pytest.param("gemma3_text", marks=pytest.mark.slow)])
def test_drop_rewrites_per_layer_config_fields(model_type, tmp_path):
    """GPT-Neo's attention_layers / Gemma-3's layer_types keep the entries of the remaining layers, found by
    rebuilding the class from the rewritten config (no adapter)."""
    from secateurs.testing.hf_tiny import build

    t = build(model_type)
    before = list(getattr(t.model.config, "attention_layers", None) or t.model.config.layer_types)
    report = sc.prune(t.model, t.inputs, drop_layers=1, calibration=[t.inputs])
    assert report.verification.ok and report.verification.mode == "exact"
    (gone,) = next(iter(report.plan.dropped_layers.values()))
    after = list(getattr(t.model.config, "attention_layers", None) or t.model.config.layer_types)
    assert after == [x for i, x in enumerate(before) if i != gone]
    _stock_reload_same(t.model, t.inputs, tmp_path)


def test_drop_the_config_cannot_describe_is_refused_before_surgery():
    """MobileViT's config has no per-stage block counts: a stock reload would re-create the block, so sc.plan says
    no and the model is untouched."""
    from secateurs.errors import ConfigRewriteError
    from secateurs.testing.hf_tiny import build

    t = build("mobilevit")
    state = copy.deepcopy(t.model.state_dict())
    with pytest.raises(ConfigRewriteError, match="cannot be written into MobileViTConfig"):
        sc.plan(t.model, t.inputs, drop_layers=1, calibration=[t.inputs])
    assert all(torch.equal(state[k], v) for k, v in t.model.state_dict().items())
