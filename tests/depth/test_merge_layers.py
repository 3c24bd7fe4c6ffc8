"""LaCo layer merging: the parameter arithmetic, the choice by representation similarity, the plan record, surgery
(config and cache indices renumbered, reload with from_pretrained) and the refusals."""

import copy

import pytest
import torch

import secateurs as sc
from secateurs.errors import FileFormatError, InvalidArgumentError
from secateurs.plans import Plan
from secateurs.surgery.blocks import merged_parameters
from secateurs.testing.hf import tiny, token_batches

transformers = pytest.importorskip("transformers")


def _llama(layers: int = 4) -> torch.nn.Module:
    return tiny("llama", layers=layers).model


def _x() -> dict:
    return {"input_ids": token_batches(1, seed=7)[0]["input_ids"], "use_cache": False}


def test_merged_parameters_keep_the_differences():
    model = _llama()
    blocks = list(model.model.layers)
    merged = merged_parameters(blocks, [1, 2, 3])
    name = "mlp.down_proj.weight"
    w = [dict(b.named_parameters())[name] for b in blocks]
    torch.testing.assert_close(merged[name], w[1] + (w[2] - w[1]) + (w[3] - w[1]))
    assert set(merged) == {n for n, _ in blocks[1].named_parameters()}


def test_a_merged_pair_computes_what_keeping_its_second_block_computes():
    """theta_l + (theta_{l+1} - theta_l) = theta_{l+1}: merging two blocks is dropping the first of them."""
    merged, dropped = _llama(), _llama()
    x = _x()
    plan = sc.plan(merged, x, merge_layers=1, calibration=token_batches(2), ratio=0.0)
    (run,) = plan.merged_layers["model.layers"]
    sc.apply(merged, plan)
    drop_plan = copy.deepcopy(plan)
    drop_plan.merged_layers = {}
    drop_plan.dropped_layers = {"model.layers": [run[0]]}
    sc.apply(dropped, drop_plan)
    torch.testing.assert_close(merged(**x).logits, dropped(**x).logits)


def test_merge_layers_prunes_renumbers_replays_and_reloads(tmp_path):
    model = _llama(layers=5)
    x = _x()
    calib = token_batches(3)
    report = sc.prune(model, x, merge_layers=2, calibration=calib, ratio=0.0)
    plan = report.plan
    rec = plan.settings["merge_layers"]
    assert rec["method"] == "laco" and len(rec["steps"]) == 2 and 0 < rec["similarity"] <= 1
    assert sorted(i for run in plan.merged_layers["model.layers"] for i in run[1:]) == plan.dropped_layers["model.layers"]
    assert len(model.model.layers) == model.config.num_hidden_layers == 3
    assert [layer.self_attn.layer_idx for layer in model.model.layers] == [0, 1, 2]
    assert report.verification.mode == "structural" and not plan.exact
    out = model.generate(x["input_ids"], max_new_tokens=3, do_sample=False)  # the cache has one slot per layer
    assert out.shape[1] == x["input_ids"].shape[1] + 3
    again = Plan.from_json(plan.to_json())
    assert again.merged_layers == plan.merged_layers
    replayed = _llama(layers=5)
    sc.apply(replayed, again)
    torch.testing.assert_close(replayed(**x).logits, model(**x).logits)
    model.save_pretrained(tmp_path)
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path)
    torch.testing.assert_close(reloaded(**x).logits, model(**x).logits)


def test_merge_choice_prefers_the_most_similar_output():
    model = _llama(layers=4)
    with torch.no_grad():  # block 2 barely changes the stream: merging it into a neighbour costs least
        for p in model.model.layers[2].parameters():
            p.mul_(1e-3)
    plan = sc.plan(model, _x(), merge_layers=1, calibration=token_batches(2), ratio=0.0)
    step = plan.settings["merge_layers"]["steps"][0]
    assert step["similarity"] == max(step["candidates"].values())
    assert 2 in plan.merged_layers["model.layers"][0]


def test_merge_layers_refusals():
    model = _llama()
    x = _x()
    with pytest.raises(InvalidArgumentError, match="calibration"):
        sc.plan(model, x, merge_layers=1)
    with pytest.raises(InvalidArgumentError, match="not both"):
        sc.PruneConfig(merge_layers=1, drop_layers=1)
    with pytest.raises(InvalidArgumentError, match="at least one must remain"):
        sc.plan(model, x, merge_layers=4, calibration=token_batches(1))
    plan = sc.plan(model, x, merge_layers=1, calibration=token_batches(1), ratio=0.0)
    bad = plan.to_dict()
    bad["merged_layers"] = {"model.layers": [[0, 2]]}
    with pytest.raises(FileFormatError, match="consecutive"):
        Plan.from_dict(bad)
    bad["merged_layers"] = {"model.layers": [[0, 1]]}
    bad["dropped_layers"] = {"model.layers": [0]}
    with pytest.raises(FileFormatError, match="first kept"):
        Plan.from_dict(bad)
