"""SliceGPT rotation: folding + one Q for the stream keeps outputs exactly; slicing then beats plain hidden pruning;
results reload with from_pretrained and sc.load; what cannot be rotated is refused and the model left unchanged."""

import copy

import pytest
import torch

import secateurs as sc
from secateurs.errors import ApplyError, InvalidArgumentError, PlanError, VerificationError
from secateurs.testing.hf import tiny, token_batches

transformers = pytest.importorskip("transformers")


def _scrambled(model_type: str, layers: int = 2, tie: bool = False) -> torch.nn.Module:
    """A tiny model whose norm scales are not ones (so folding matters) and whose stream is not isotropic."""
    model = tiny(model_type, layers=layers).model
    if tie:
        model.config.tie_word_embeddings = True
        model.lm_head.weight = model.model.embed_tokens.weight
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
        emb = model.model.embed_tokens.weight
        emb.mul_(torch.linspace(3.0, 0.1, emb.shape[1]))  # a few directions carry most of the variance
    return model


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("model_type", ["llama", "gemma"])
def test_rotation_alone_keeps_the_outputs_exactly(model_type):
    model = _scrambled(model_type)
    x = {"input_ids": token_batches(1, seed=9)[0]["input_ids"], "use_cache": False}
    before = model(**x).logits
    old = _state(model)
    report = sc.prune(model, x, ratio={"hidden": 0.0}, rotate=True, calibration=token_batches(3), importance="l2",
                      compensate=None)
    rec = report.plan.settings["rotation"]
    assert report.verification.mode == "exact" and rec["exact_rel_error"] < 1e-5
    torch.testing.assert_close(model(**x).logits, before, rtol=1e-4, atol=1e-4)
    emb = "model.embed_tokens.weight"
    assert not torch.allclose(model.state_dict()[emb], old[emb])  # the weights did change
    assert len(rec["norms"]) == 2 * 2 + 1  # two norms per block and the final one
    for n in rec["norms"]:
        w = model.get_parameter(n["path"] + ".weight")
        torch.testing.assert_close(n["a"] * w + n["b"], torch.ones_like(w))  # folded: scales by one


def test_tied_lm_head_is_untied_and_the_rotation_stays_exact():
    model = _scrambled("llama", tie=True)
    x = {"input_ids": token_batches(1, seed=9)[0]["input_ids"], "use_cache": False}
    before = model(**x).logits
    report = sc.prune(model, x, ratio={"hidden": 0.0}, rotate=True, calibration=token_batches(3), importance="l2",
                      compensate=None)
    assert report.plan.settings["rotation"]["untied"] and model.config.tie_word_embeddings is False
    assert model.lm_head.weight is not model.model.embed_tokens.weight
    torch.testing.assert_close(model(**x).logits, before, rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def tiny_lm():
    from secateurs.testing.lm import load_tiny_lm
    from secateurs.testing.lm import token_batches as lm_batches

    calib = [{**b, "use_cache": False} for b in lm_batches("train", batch_size=4, n_batches=3, seq_len=64)]
    return load_tiny_lm(), calib


def _perplexity(model: torch.nn.Module) -> float:
    from secateurs.testing.lm import held_out_bytes, perplexity

    return perplexity(model, held_out_bytes(), max_windows=48)


def test_rotated_slice_beats_plain_hidden_pruning_and_reloads(tiny_lm, tmp_path):
    base, calib = tiny_lm
    rotated, plain = copy.deepcopy(base), copy.deepcopy(base)
    options = {"ratio": {"hidden": 0.25}, "round_to": 10, "importance": "l2", "compensate": None}
    r = sc.prune(rotated, calib[0], rotate=True, calibration=calib, **options)
    sc.prune(plain, calib[0], **options)
    assert rotated.config.hidden_size == plain.config.hidden_size == 90
    assert r.plan.settings["rotation"]["norm_scale"] == pytest.approx((120 / 90) ** 0.5)
    assert _perplexity(rotated) < 0.8 * _perplexity(plain)
    x = calib[0]
    rotated.save_pretrained(tmp_path / "hf")
    again = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    torch.testing.assert_close(again(**x).logits, rotated(**x).logits)
    sc.save(rotated, r.plan, tmp_path / "sc")
    from secateurs.testing.lm import load_tiny_lm

    loaded = sc.load(tmp_path / "sc", model_factory=load_tiny_lm)
    torch.testing.assert_close(loaded(**x).logits, rotated(**x).logits)


def test_plan_rotates_in_place_and_apply_needs_the_rotated_model(tiny_lm):
    base, calib = tiny_lm
    model = copy.deepcopy(base)
    x = calib[0]
    before = model(**x).logits
    plan = sc.plan(model, x, ratio={"hidden": 0.5}, rotate=True, calibration=calib, round_to=10)
    torch.testing.assert_close(model(**x).logits, before, rtol=1e-4, atol=1e-4)  # same function, rotated weights
    assert plan.config.rotate and plan.config.importance == "wanda"  # "auto" resolved and recorded
    fresh = copy.deepcopy(base)
    with pytest.raises(ApplyError, match="rotated model"):
        sc.apply(fresh, plan)
    sc.apply(model, plan)
    assert model.config.hidden_size == 60
    again = sc.plan(copy.deepcopy(base), x, sc.PruneConfig.from_json(plan.config.to_json()), calibration=calib)
    assert again.keep == plan.keep  # the recorded config replays


def test_what_cannot_be_rotated_is_refused_and_left_unchanged():
    gpt2 = tiny("gpt2").model
    x = {"input_ids": token_batches(1)[0]["input_ids"], "use_cache": False}
    old = _state(gpt2)
    with pytest.raises(PlanError, match="LayerNorm"):
        sc.prune(gpt2, x, ratio={"hidden": 0.25}, rotate=True, calibration=token_batches(2))
    assert all(torch.equal(v, old[k]) for k, v in gpt2.state_dict().items())
    llama = _scrambled("llama")
    with pytest.raises(InvalidArgumentError, match="calibration"):
        sc.prune(llama, x, ratio={"hidden": 0.25}, rotate=True)
    with pytest.raises(InvalidArgumentError, match="ratio"):
        sc.PruneConfig(rotate=True, target=sc.Budget(macs=0.5))
    old = _state(llama)
    with pytest.raises(VerificationError, match="restored"):
        sc.prune(llama, x, ratio={"hidden": 0.25}, rotate=True, calibration=token_batches(2), tolerance=1e-15)
    assert all(torch.equal(v, old[k]) for k, v in llama.state_dict().items())


def test_per_layer_rotation_is_exact_alone_and_reloads_through_secateurs_load(tiny_lm, tmp_path):
    base, calib = tiny_lm
    x = calib[0]
    model = copy.deepcopy(base)
    before = model(**x).logits
    alone = sc.prune(model, x, ratio={"hidden": 0.0}, rotate=True, rotate_per_layer=True, calibration=calib,
                     importance="l2", compensate=None)
    assert alone.verification.mode == "exact" and alone.plan.settings["rotation"]["per_layer"]
    torch.testing.assert_close(model(**x).logits, before, rtol=1e-4, atol=1e-4)
    assert len(alone.plan.settings["rotation"]["shortcuts"]) == 2 * 4
    model = copy.deepcopy(base)
    with pytest.warns(UserWarning, match="attn_shortcut.*will not rebuild it with the stock class"):
        r = sc.prune(model, x, ratio={"hidden": 0.5}, rotate=True, rotate_per_layer=True, calibration=calib,
                     importance="l2", compensate=None, round_to=10)
    assert model.model.layers[0].attn_shortcut.weight.shape == (60, 60)
    assert _perplexity(model) < 8.0  # plain hidden pruning at 50% is above 20 (bench/bench_llm_methods.py)
    sc.save(model, r.plan, tmp_path / "sc")
    from secateurs.testing.lm import load_tiny_lm

    loaded = sc.load(tmp_path / "sc", model_factory=load_tiny_lm)
    torch.testing.assert_close(loaded(**x).logits, model(**x).logits)
    torch.testing.assert_close(copy.deepcopy(model)(**x).logits, model(**x).logits)  # hooks follow the copy
    with pytest.raises(InvalidArgumentError, match="rotate=True too"):
        sc.PruneConfig(rotate_per_layer=True)
