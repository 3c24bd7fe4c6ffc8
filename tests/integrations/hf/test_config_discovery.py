"""Config fields found by rebuilding the class from perturbed configs on the meta device; the plan-time check."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

import secateurs as sc
from secateurs.errors import StockConfigWarning
from secateurs.testing.hf import tiny

transformers = pytest.importorskip("transformers")
from secateurs.integrations.hf.config_discovery import sensitivity  # noqa: E402
from secateurs.integrations.hf.config_sync import config_rewrite  # noqa: E402
from secateurs.integrations.hf.expressible import meta_clone, stock_config_problems  # noqa: E402


def test_probes_find_the_width_fields_and_the_layer_count():
    t = tiny("llama")
    sens = sensitivity(type(t.model), t.model.config)
    assert {"hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "head_dim"} <= set(
        sens.probes)
    assert "num_hidden_layers" in sens.structural  # it changes the set of tensors, not their shapes
    new_value, seen = sens.probes["intermediate_size"]
    assert new_value == 256 and seen.shapes["model.layers.0.mlp.down_proj.weight"] == (64, 256)


def test_rewrite_of_pruned_heads_and_ffn():
    t = tiny("llama")
    plan = sc.plan(t.model, t.inputs, ratio={"heads": 0.5, "ffn": 0.25})
    clone = meta_clone(t.model)
    sc.apply(clone, plan)
    assert clone.config.intermediate_size == 96 and clone.config.num_attention_heads == 2  # written by apply
    assert config_rewrite(clone).ok  # nothing left to rewrite


def test_no_adapter_needed_and_stale_attributes_follow_the_config(tmp_path):
    """OLMo has no adapter: query heads within each KV group go, and the attention's num_key_value_groups (read by
    repeat_kv, refreshed by no handler) is set from a model rebuilt from the new config."""
    from transformers import OlmoConfig, OlmoForCausalLM

    torch.manual_seed(0)
    model = OlmoForCausalLM(OlmoConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)).eval()
    x = {"input_ids": torch.randint(1, 128, (2, 8))}
    report = sc.prune(model, x, ratio={"query_heads": 0.5})
    assert report.verification.ok and report.verification.mode == "exact"
    assert (model.config.num_attention_heads, model.config.num_key_value_heads) == (2, 2)
    assert all(layer.self_attn.num_key_value_groups == 1 for layer in model.model.layers)
    model.save_pretrained(tmp_path)
    fresh = OlmoForCausalLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(**x).logits, model(**x).logits, rtol=0, atol=0)


def test_plan_time_check_says_why_and_how_before_surgery():
    t = tiny("bert")
    state = copy.deepcopy(t.model.state_dict())
    with pytest.warns(StockConfigWarning, match="before surgery.*derives the head size.*secateurs.save"):
        plan = sc.plan(t.model, t.inputs, ratio={"heads": 0.5}, valid_heads=False)  # the counts asked
    assert all(torch.equal(state[k], v) for k, v in t.model.state_dict().items())  # nothing was changed
    assert plan.settings["checks"] and "derives the head size" in plan.settings["checks"][0]
    assert stock_config_problems(t.model, plan)  # the function a planner can call on candidate plans
    expressible = sc.plan(t.model, t.inputs, ratio={"ffn": 0.5})
    assert stock_config_problems(t.model, expressible) == []


def test_uneven_widths_are_named_with_the_way_out():
    t = tiny("llama")
    with pytest.warns(StockConfigWarning, match="differs across layers.*uniform=True"):
        sc.plan(t.model, t.inputs, ratio={"ffn": 0.5}, scope="global")


def test_expressible_plans_are_silent():
    t = tiny("qwen2")
    with warnings.catch_warnings():
        warnings.simplefilter("error", StockConfigWarning)
        plan = sc.plan(t.model, t.inputs, ratio={"heads": 0.5, "ffn": 0.25})
    assert "checks" in plan.settings and plan.settings["checks"] == []


def test_a_solution_that_would_recompute_a_kept_float_is_no_solution():
    """Query width 8 x 24 and key width 4 x 24 pruned to 144 and 72: head_dim = 18 gives both, and so do num_heads = 6
    with num_kv = 3; but head_dim also sets the attention's softmax scale, which the pruned model keeps, so only the
    head counts rebuild the same model. When every answer moves a kept float (Evolla: num_heads also sets an
    adapter's scale) there is no solution, and the problem names the float."""
    from secateurs.integrations.hf.config_discovery import Observed, Sensitivity
    from secateurs.integrations.hf.config_solve import solve

    def seen(q: int, k: int, scaling: float = 24 ** -0.5, adapter: float = 0.25) -> Observed:
        return Observed({"q.weight": (q, 192), "k.weight": (k, 192)}, {},
                        {"attn:scaling": scaling, "adapter:scale": adapter})

    probes = {"head_dim": (48, seen(384, 192, scaling=48 ** -0.5)), "num_heads": (16, seen(384, 96)),
              "num_kv": (8, seen(192, 192))}
    sens = Sensitivity(seen(192, 96), {"head_dim": 24, "num_heads": 8, "num_kv": 4}, probes)
    target = {"q.weight[0]": 144, "q.weight[1]": 192, "k.weight[0]": 72, "k.weight[1]": 192}
    kept = ["attn:scaling", "adapter:scale"]
    assert solve(sens, target).values == {"head_dim": 18}  # sizes alone: one field changed is the simplest
    assert solve(sens, target, kept).values == {"num_heads": 6, "num_kv": 3}
    sens.probes["num_heads"] = (16, seen(384, 96, adapter=0.125))
    problems = solve(sens, target, kept).problems
    assert problems and "would also change" in problems[0] and "attn:scaling" in problems[0]
