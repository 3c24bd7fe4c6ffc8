"""Kept counts the discovered config fields can express: tied widths keep their ratio, derived head sizes pin heads."""

from __future__ import annotations

import importlib
import warnings

import pytest
import torch

import secateurs as sc
from secateurs.errors import NothingPrunedWarning, StockConfigWarning
from secateurs.testing.hf_tiny import build
from secateurs.testing.hf_zoo import max_relative_error

transformers = pytest.importorskip("transformers")
importlib.import_module("secateurs.integrations.hf.handlers")  # registers the Hugging Face provider


def _reload_error(model, inputs, tmp_path) -> float:
    model.save_pretrained(tmp_path)
    fresh = type(model).from_pretrained(tmp_path).eval()
    with torch.no_grad():
        return max_relative_error(model(**inputs), fresh(**inputs))


def test_shared_experts_keep_the_multiple_of_the_expert_width(tmp_path):
    """Aria: shared experts are moe_num_shared_experts x the expert width; 30% of each rounds to 180 of 256 and
    359 of 512, which no whole-number field values give; the plan keeps 360 = 2 x 180 and says so."""
    tiny = build("aria_text")
    model, inputs = tiny.model, tiny.inputs
    cfg = model.config
    assert (cfg.intermediate_size, cfg.moe_num_shared_experts) == (256, 2)
    with pytest.warns(UserWarning, match="config cannot hold the asked widths"):
        report = sc.prune(model, inputs, ratio={"ffn": 0.3})
    assert report.verification.ok and report.verification.mode == "exact"
    changes = report.plan.settings["count_constraints"]
    assert [c["kept_asked"] for c in changes] == [[180, 359, 180, 359]]  # both layers: one field holds them all
    assert [c["kept_used"] for c in changes] == [[180, 360, 180, 360]]
    assert not report.plan.settings.get("checks")  # a stock config describes the result
    assert model.config.intermediate_size == 180
    assert model.layers[0].mlp.shared_experts.down_proj.in_features == 360
    assert _reload_error(model, inputs, tmp_path) == 0.0


def test_derived_head_size_keeps_every_head_and_prunes_the_ffn(tmp_path):
    """BERT's query width is hidden_size (head size = hidden // heads): with the hidden size kept, no head count
    but 8 can be written, so the heads stay and the FFN is pruned; the model reloads to the same outputs."""
    tiny = build("bert")
    model, inputs = tiny.model, tiny.inputs
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = sc.prune(model, inputs, ratio={"heads": 0.25, "ffn": 0.3})
    said = [str(w.message) for w in caught]
    assert any("heads ratio 0.25 -> 0 (8 of 8 kept)" in s for s in said)
    assert any(issubclass(w.category, NothingPrunedWarning) and "config can express no smaller count" in str(w.message)
               for w in caught)
    assert not any(issubclass(w.category, StockConfigWarning) for w in caught)
    assert report.verification.ok
    removed = [(g.kind, len(g.removed)) for g in report.plan.groups if g.removed]
    assert removed == [("channels", 76), ("channels", 76)]  # 30% of 256 in each layer; no head
    assert [c["kept_used"] for c in report.plan.settings["count_constraints"]][0].count(8) == 2
    assert model.config.num_attention_heads == 8 and model.config.intermediate_size == 180
    assert _reload_error(model, inputs, tmp_path) == 0.0


def test_valid_heads_false_keeps_the_asked_counts_and_warns_before_surgery():
    tiny = build("bert")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = sc.prune(tiny.model, tiny.inputs, ratio={"heads": 0.25, "ffn": 0.3}, valid_heads=False)
    assert sum(len(g.removed) for g in report.plan.groups if g.kind == "heads") == 4
    assert any(issubclass(w.category, StockConfigWarning) and "derives the head size" in str(w.message)
               for w in caught)


def test_a_size_field_left_none_is_found_and_written(tmp_path):
    """GPT-2's n_inner is None (the FFN is then 4 x n_embd): discovery finds that giving it a value sets the FFN
    width, so a pruned FFN is written as n_inner and the stock class reloads it."""
    from secateurs.integrations.hf.config_discovery import sensitivity

    tiny = build("gpt2")
    model, inputs = tiny.model, tiny.inputs
    assert model.config.n_inner is None
    assert sensitivity(type(model), model.config).written.get("n_inner") == 4 * 192
    report = sc.prune(model, inputs, ratio={"ffn": 0.3})
    assert report.verification.ok and not report.plan.settings.get("checks")
    assert model.config.n_inner == 768 - 230
    assert _reload_error(model, inputs, tmp_path) == 0.0


def test_a_frozen_dim_in_another_layer_does_not_stop_the_constraint(tmp_path):
    """data2vec-audio derives its head size, and its positional conv stack has dims no group plans at the ends of
    its chain: those are not a layer asked to keep its width, so the heads are still kept whole and it reloads."""
    tiny = build("data2vec-audio")
    model, inputs = tiny.model, tiny.inputs
    report = sc.prune(model, inputs, ratio={"heads": 0.25, "ffn": 0.3})
    assert report.verification.ok and not report.plan.settings.get("checks")
    assert [c["kept_used"].count(8) for c in report.plan.settings["count_constraints"]] == [2]
    assert model.config.num_attention_heads == 8 and model.config.intermediate_size == 180
    assert _reload_error(model, inputs, tmp_path) == 0.0


def _group(gid: int, kind: str, n: int, tags: set[str]):
    import numpy as np

    from secateurs.graph.groups import Group, Member

    return Group(gid, kind, [Member(f"m{gid}.weight", 0, gid)], {gid: np.arange(n).reshape(n, 1)}, True, tags=tags)


def test_an_intermediate_width_and_another_channel_group_of_its_size_are_not_alike():
    """D-FINE: one field ties an FFN-like conv width (asked 180 of 256) and a 256-wide channel group the request
    leaves whole; they answer to different ratios, so the request is uniform and the set is constrained."""
    from secateurs.integrations.hf.config_counts import _uneven

    ffn, other, ffn2 = _group(1, "channels", 256, {"ffn"}), _group(2, "channels", 256, set()), _group(3, "channels",
                                                                                                        256, {"ffn"})
    assert not _uneven([ffn, other], {1: 180, 2: 256})
    assert _uneven([ffn, ffn2], {1: 180, 3: 256})  # two FFN widths asked differently: per-layer widths


def test_only_sizes_in_held_modules_leave_a_tied_set_to_the_plan_check():
    """A size no group plans in a dropped or ignored block: the user keeps that block, so the set is left to the
    plan check; the same size in a module the user did not hold (a width frozen at an output) must be kept by the
    config, so it is no reason to skip."""
    from secateurs.integrations.hf.config_counts import _elsewhere

    tied = [_group(1, "channels", 8, {"ffn"})]
    sizes = {1: [("layers.0.mlp.up.weight[0]", 1)]}
    base = {"layers.0.mlp.up.weight[0]": 8, "layers.1.mlp.up.weight[0]": 8, "layers.1.attn:num_heads": 2}
    covered = {"layers.0.mlp.up.weight[0]"}
    assert _elsewhere(tied, sizes, base, covered, ("layers.1.",))
    assert not _elsewhere(tied, sizes, base, covered, ())
    assert not _elsewhere(tied, sizes, base, covered, ("layers.2.",))


class _RatioConfig(transformers.PretrainedConfig):
    model_type = "secateurs_ratio_test"

    def __init__(self, hidden_size: int = 24, mlp_ratio: float = 4.0, **kwargs):
        self.hidden_size, self.mlp_ratio = hidden_size, mlp_ratio
        super().__init__(**kwargs)


class _RatioModel(transformers.PreTrainedModel):
    config_class = _RatioConfig
    base_model_prefix = "ratio"

    def __init__(self, config: _RatioConfig):
        super().__init__(config)
        inner = int(config.hidden_size * config.mlp_ratio)  # the width is a float times another field
        self.up, self.down = torch.nn.Linear(config.hidden_size, inner), torch.nn.Linear(inner, config.hidden_size)
        self.post_init()

    def forward(self, x):
        return x + self.down(torch.relu(self.up(x)))


def test_a_width_given_as_a_float_ratio_is_written_as_that_ratio(tmp_path):
    """int(24 * mlp_ratio) = 96 pruned by 30% keeps 68 neurons: mlp_ratio becomes 68/24 = 2.8333..., written a hair
    above so that int() lands on 68, and the stock class rebuilds the pruned model."""
    torch.manual_seed(0)
    model = _RatioModel(_RatioConfig()).eval()
    x = torch.randn(2, 5, 24)
    report = sc.prune(model, (x,), ratio={"ffn": 0.3})
    assert report.verification.ok and model.up.out_features == 68
    assert int(24 * model.config.mlp_ratio) == 68 and abs(model.config.mlp_ratio - 68 / 24) < 1e-6
    model.save_pretrained(tmp_path)
    fresh = _RatioModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(model(x), fresh(x))


class _BlockConfig(transformers.PretrainedConfig):
    model_type = "secateurs_block_test"

    def __init__(self, hidden_size: int = 32, num_heads: int = 4, mlp_ratio: int = 4, **kwargs):
        self.hidden_size, self.num_heads, self.mlp_ratio = hidden_size, num_heads, mlp_ratio
        super().__init__(**kwargs)


class _BlockModel(transformers.PreTrainedModel):
    """One pre-norm block whose head size is derived (hidden // heads) and whose FFN is an integer multiple of the
    hidden size: one field, hidden_size, ties the heads, the FFN and the residual stream."""

    config_class = _BlockConfig
    base_model_prefix = "block"

    def __init__(self, config: _BlockConfig):
        super().__init__(config)
        h = config.hidden_size
        self.num_heads, self.head_dim = config.num_heads, h // config.num_heads
        self.norm = torch.nn.LayerNorm(h)
        self.q, self.k, self.v, self.o = (torch.nn.Linear(h, h) for _ in range(4))
        self.up, self.down = torch.nn.Linear(h, h * config.mlp_ratio), torch.nn.Linear(h * config.mlp_ratio, h)
        self.post_init()

    def forward(self, x):
        b, t, _ = x.shape
        y = self.norm(x)
        q, k, v = (p(y).view(b, t, self.num_heads, self.head_dim).transpose(1, 2) for p in (self.q, self.k, self.v))
        a = torch.nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, -1)
        x = x + self.o(a)
        return x + self.down(torch.relu(self.up(self.norm(x))))


def test_kinds_the_config_can_write_are_pruned_and_the_others_kept(tmp_path):
    """heads=0.25 cannot be written (the head size is derived from the kept hidden size) and 30% of the FFN is no
    whole multiple of the hidden size: the heads stay whole and the FFN keeps the nearest whole multiple, 3 x 32 of
    4 x 32 (mlp_ratio 3), instead of the whole tied set staying as it was; the stock class rebuilds the result."""
    torch.manual_seed(0)
    model = _BlockModel(_BlockConfig()).eval()
    x = torch.randn(2, 5, 32)
    with pytest.warns(UserWarning, match="config cannot hold the asked widths"):
        report = sc.prune(model, (x,), ratio={"heads": 0.25, "ffn": 0.3})
    assert report.verification.ok
    assert (model.up.out_features, model.q.out_features, model.config.mlp_ratio) == (96, 32, 3)
    model.save_pretrained(tmp_path)
    fresh = _BlockModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(model(x), fresh(x))
