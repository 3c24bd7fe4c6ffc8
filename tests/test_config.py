"""PruneConfig: validated on construction, one target, versioned JSON round trip, plans replay from it."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import secateurs as sc
from secateurs.config import CONFIG_FORMAT, CriterionSpec, PruneConfig
from secateurs.errors import InvalidArgumentError, InvalidTypeError
from secateurs.scoring.taylor import Taylor
from secateurs.targets import Budget, LatencyTarget, Ratio
from secateurs.testing.models import TinyResNet, TinyViT


def test_keywords_build_a_config_with_one_target():
    c = PruneConfig.build(ratio={"heads": 0.25, "ffn": 0.3}, importance="l1", round_to=8)
    assert c.target == Ratio({"heads": 0.25, "ffn": 0.3}) and c.importance == "l1" and c.round_to == 8
    assert PruneConfig.build(macs=0.5).target == Budget(macs=0.5)
    assert PruneConfig.build(macs=0.5, params=0.6).target == Budget(0.5, 0.6)
    assert PruneConfig.build(latency=0.7).target == LatencyTarget(0.7)
    assert PruneConfig.build(uniform=False).scope == "global"
    base = PruneConfig(importance="l1")
    assert PruneConfig.build(base, seed=3) == PruneConfig(importance="l1", seed=3)


@pytest.mark.parametrize("options,error,match", [
    ({"ratio": 0.3, "macs": 0.5}, InvalidArgumentError, "pass one target"),
    ({"ratio": 1.5}, InvalidArgumentError, "fraction removed"),
    ({"ratio": {"nope": 0.2}}, InvalidArgumentError, "unknown unit kind"),
    ({"macs": 0.0}, InvalidArgumentError, "KEPT"),
    ({"round_to": 0}, InvalidArgumentError, "round_to must be a positive integer"),
    ({"scope": "sideways"}, InvalidArgumentError, "scope must be one of"),
    ({"max_ratio": 1.0}, InvalidArgumentError, "max_ratio"),
    ({"check": "maybe"}, InvalidArgumentError, "check must be"),
    ({"layer_importance": "angular"}, InvalidArgumentError, "without drop_layers"),
    ({"drop_layers": 1, "macs": 0.5}, InvalidArgumentError, "cannot be combined"),
    ({"overrides": {"fc": 2}}, InvalidArgumentError, "overrides"),
    ({"colour": "red"}, InvalidTypeError, "unknown pruning option"),
    ({"importance": 3}, InvalidTypeError, "criterion name"),
])
def test_bad_options_fail_on_construction(options, error, match):
    with pytest.raises(error, match=match):
        PruneConfig.build(**options)


def test_json_round_trip_of_every_field():
    c = PruneConfig(target=LatencyTarget(0.5, threads=1, repeats=3), importance=Taylor(reduce="unit"), scope="global",
                    normalize="max", ignore=("fc", nn.LayerNorm), overrides={"layer1.*": 0.2}, round_to=4, min_keep=2,
                    max_ratio=0.8, seed=7, check="full", tolerance=1e-3, compensate="lstsq")
    doc = json.loads(c.to_json())
    assert doc["format"] == CONFIG_FORMAT and doc["importance"] == {"name": "taylor", "options": {"reduce": "unit"}}
    assert doc["ignore"] == ["fc", {"type": "torch.nn.modules.normalization.LayerNorm"}]
    back = PruneConfig.from_json(c.to_json())
    assert back.importance == CriterionSpec("taylor", {"reduce": "unit"})
    assert back.ignore == ("fc", nn.LayerNorm) and back.target == c.target and back.overrides == c.overrides
    assert back.to_json() == c.to_json()


def test_from_dict_refuses_unknown_fields_and_formats():
    with pytest.raises(InvalidArgumentError, match="unknown PruneConfig fields"):
        PruneConfig.from_dict({"format": CONFIG_FORMAT, "colour": "red"})
    with pytest.raises(InvalidArgumentError, match="format"):
        PruneConfig.from_dict({"format": 99})
    with pytest.raises(InvalidArgumentError, match="not among the imported classes"):
        PruneConfig.from_dict({"format": CONFIG_FORMAT, "ignore": [{"type": "os.system.Nope"}]})


@pytest.mark.parametrize("make,x,options", [
    (TinyResNet, torch.randn(1, 3, 32, 32), {"ratio": 0.4, "round_to": 2}),
    (TinyResNet, torch.randn(1, 3, 32, 32), {"macs": 0.5, "scope": "global"}),
    (TinyViT, torch.randn(2, 3, 16, 16), {"ratio": {"heads": 0.5, "ffn": 0.25}, "importance": "l1"}),
])
def test_a_plan_replays_from_its_own_config(make, x, options):
    torch.manual_seed(0)
    model = make().eval()
    plan = sc.plan(model, x, **options)
    text = plan.to_json()
    restored = sc.Plan.from_json(text)
    assert restored.config == plan.config
    again = sc.plan(model, x, restored.config)
    assert again.keep == plan.keep and again.hints == plan.hints


def test_criterion_options_from_a_file_build_the_criterion():
    from secateurs.scoring.registry import get_criterion

    crit = get_criterion(CriterionSpec("taylor", {"reduce": "unit"}))
    assert isinstance(crit, Taylor) and crit.reduce == "unit"
    with pytest.raises(InvalidArgumentError, match="has no options"):
        get_criterion(CriterionSpec("taylor", {"colour": 1}))
