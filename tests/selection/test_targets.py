"""MACs/params budgets: the cost model is exact on covered ops, and plans land within ±5%."""

from __future__ import annotations

import copy

import pytest
import torch

import secateurs as sc
from secateurs.errors import InvalidArgumentError, TargetUnreachableError
from secateurs.selection.cost import CostModel
from secateurs.testing.models import ConcatNet
from secateurs.testing.toys import ConvBN, DeepMLP, GroupedQueryAttention, MultiHeadAttention

CASES = [
    (ConvBN, (2, 3, 8, 8)),
    (DeepMLP, (4, 8)),
    (MultiHeadAttention, (1, 6, 16)),
    (ConcatNet, (1, 3, 16, 16)),
]


def kept_fraction(model: torch.nn.Module, plan: sc.Plan, x: torch.Tensor) -> tuple[float, float]:
    macs0, params0 = sc.count(model, x)
    pruned = copy.deepcopy(model)
    sc.apply(pruned, plan)
    macs1, params1 = sc.count(pruned, x)
    return macs1 / macs0, params1 / params0


@pytest.mark.parametrize("factory,shape", CASES)
def test_cost_model_matches_count_on_a_pruned_copy(factory, shape) -> None:
    model, x = factory().eval(), torch.randn(*shape)
    analysis = sc.analyze(model, x)
    plan = sc.plan(model, x, ratio=0.4, analysis=analysis)
    estimate = CostModel(analysis, model).kept({g.id: len(g.removed) for g in plan.groups}, analysis.groups)
    macs, params = kept_fraction(model, plan, x)
    assert estimate["macs"] == pytest.approx(macs, rel=1e-9)
    assert estimate["params"] == pytest.approx(params, rel=1e-9)


@pytest.mark.parametrize("scope", ["global", "local"])
@pytest.mark.parametrize("metric", ["macs", "params"])
def test_targets_are_met_within_five_percent(scope: str, metric: str) -> None:
    model, x = ConvBN(width=16).eval(), torch.randn(1, 3, 8, 8)
    plan = sc.plan(model, x, scope=scope, **{metric: 0.5})
    achieved = dict(zip(("macs", "params"), kept_fraction(model, plan, x), strict=True))[metric]
    assert achieved == pytest.approx(0.5, rel=0.05)
    assert plan.settings["achieved"][metric] == pytest.approx(achieved)
    assert plan.settings["targets"] == {metric: 0.5} and plan.settings["ratios"] is None


def test_two_targets_keep_both_at_or_below_budget() -> None:
    model, x = ConvBN(width=16).eval(), torch.randn(1, 3, 8, 8)
    plan = sc.plan(model, x, macs=0.6, params=0.5, scope="global")
    macs, params = kept_fraction(model, plan, x)
    assert macs <= 0.6 * 1.05 and params <= 0.5 * 1.05
    assert abs(params / 0.5 - 1) <= 0.05 or abs(macs / 0.6 - 1) <= 0.05


def test_prune_with_a_macs_target_on_attention() -> None:
    model, x = MultiHeadAttention(dim=32, heads=16).eval(), torch.randn(1, 6, 32)
    macs0, _ = sc.count(model, x)
    report = sc.prune(model, x, macs=0.7, scope="global")
    assert report.verification is not None and report.verification.ok
    assert report.macs_after / macs0 == pytest.approx(0.7, rel=0.05)


def test_target_between_whole_heads_names_the_nearest_values() -> None:
    model, x = MultiHeadAttention(dim=32, heads=8).eval(), torch.randn(1, 6, 32)
    with pytest.raises(TargetUnreachableError, match=r"macs=0\.750"):  # 6 of 8 heads keep 0.75, 5 keep 0.625
        sc.plan(model, x, macs=0.7)


def test_unreachable_target_is_a_clear_error() -> None:
    model, x = ConvBN().eval(), torch.randn(1, 3, 8, 8)
    with pytest.raises(TargetUnreachableError, match="cannot be reached"):
        sc.plan(model, x, params=0.05, min_keep=4)
    with pytest.raises(TargetUnreachableError):
        sc.plan(model, x, macs=0.3, ignore=["conv2", "bn2"])


@pytest.mark.parametrize("kwargs", [{"macs": 0.0}, {"macs": 1.5}, {"params": "half"}, {"macs": 0.5, "ratio": 0.3}])
def test_bad_targets(kwargs: dict) -> None:
    with pytest.raises(InvalidArgumentError):
        sc.plan(ConvBN().eval(), torch.randn(1, 3, 8, 8), **kwargs)


def test_gqa_target_removes_whole_kv_groups() -> None:
    model, x = GroupedQueryAttention().eval(), torch.randn(1, 5, 16)
    report = sc.prune(model, x, params=0.75, scope="global")
    assert report.verification is not None and report.verification.ok
    heads = next(g for g in report.plan.groups if g.kind == "heads")
    assert heads.removed and report.plan.settings["achieved"]["params"] == pytest.approx(0.75, rel=0.05)
    gone = len(heads.removed)
    assert model.k.out_features == (4 - gone) * 4 and model.q.out_features == (4 - gone) * 8
    assert sc.Plan.from_json(report.plan.to_json()).settings == report.plan.settings
