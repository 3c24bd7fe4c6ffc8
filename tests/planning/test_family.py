"""plan_family(): one scoring pass, nested plans, each meeting its target as plan() does."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import secateurs as sc
from secateurs.errors import InvalidArgumentError, InvalidTypeError
from secateurs.testing.models import TinyResNet
from secateurs.testing.toys import ConvBN, MultiHeadAttention


def kept(model: torch.nn.Module, plan: sc.Plan, x: torch.Tensor) -> dict[str, float]:
    macs0, params0 = sc.count(model, x)
    pruned = copy.deepcopy(model)
    sc.apply(pruned, plan)
    macs1, params1 = sc.count(pruned, x)
    return {"macs": macs1 / macs0, "params": params1 / params0}


def assert_nested(plans: list[sc.Plan]) -> None:
    for larger, smaller in zip(plans, plans[1:], strict=False):
        small = {g.id: set(g.removed) for g in smaller.groups}
        for g in larger.groups:
            assert set(g.removed) <= small[g.id], f"group {g.name} is not nested"
        assert larger.removed_units() < smaller.removed_units()


@pytest.mark.parametrize("metric,factory,shape", [("macs", TinyResNet, (1, 3, 16, 16)), ("params", ConvBN, (1, 3, 8, 8))])
def test_family_is_nested_and_every_plan_meets_its_target(metric: str, factory, shape) -> None:
    model, x = factory(width=16).eval(), torch.randn(*shape)
    values = [0.75, 0.5, 0.25]
    plans = sc.plan_family(model, x, **{metric: values})
    assert len(plans) == 3
    assert_nested(plans)
    for value, plan in zip(values, plans, strict=True):
        assert kept(model, plan, x)[metric] == pytest.approx(value, rel=0.05)
        assert plan.settings["family"] == {"metric": metric, "values": values, "index": values.index(value)}


def test_family_keeps_the_order_given_and_works_with_local_ratios() -> None:
    model, x = ConvBN(width=16).eval(), torch.randn(1, 3, 8, 8)
    plans = sc.plan_family(model, x, ratio=[0.5, 0.25, 0.75], scope="local")
    assert [p.removed_units() for p in plans] == [24, 12, 36]  # 8+16 channels per 100%
    assert_nested([plans[1], plans[0], plans[2]])


def test_scores_are_computed_once_per_group() -> None:
    calls: list[int] = []

    class Counting:
        name, needs_data = "counting", False

        def scores(self, group, ctx):
            calls.append(group.id)
            return np.arange(group.n_units, dtype=np.float64)

    model, x = ConvBN(width=16).eval(), torch.randn(1, 3, 8, 8)
    plans = sc.plan_family(model, x, macs=[0.8, 0.6, 0.4], importance=Counting())
    assert sorted(calls) == sorted(set(calls)) and len(calls) == 2
    assert_nested(plans)
    assert all(p.settings["importance"] == "counting" for p in plans)


def test_calibration_is_collected_once(monkeypatch) -> None:
    import secateurs.scoring.score as planning

    calls: list[int] = []
    real = planning.collect

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(planning, "collect", counting)
    model, x = ConvBN(width=16).eval(), torch.randn(1, 3, 8, 8)
    batches = [torch.randn(4, 3, 8, 8) for _ in range(2)]
    plans = sc.plan_family(model, x, macs=[0.75, 0.5], importance="activation", calibration=batches)
    assert len(calls) == 1
    assert_nested(plans)
    assert all(p.settings["calibration"]["batches"] == 2 for p in plans)


def test_heads_family_is_nested() -> None:
    model, x = MultiHeadAttention(dim=32, heads=8).eval(), torch.randn(1, 6, 32)
    plans = sc.plan_family(model, x, macs=[0.75, 0.5])
    assert_nested(plans)


def test_a_plan_that_is_not_nested_is_repaired_by_union() -> None:
    from secateurs.planning.build import build_plan
    from secateurs.planning.family import _nested

    model, x = ConvBN(width=8).eval(), torch.randn(1, 3, 8, 8)
    analysis = sc.analyze(model, x)
    gid = analysis.groups[0].id
    larger = build_plan(analysis, {gid: np.array([0, 1])}, {})
    smaller = build_plan(analysis, {gid: np.array([2, 3, 4])}, {})
    repaired = _nested(model, analysis, larger, smaller, "ratio", 0.5, x)
    assert next(g for g in repaired.groups if g.id == gid).removed == [0, 1, 2, 3, 4]


def test_bad_family_arguments() -> None:
    model, x = ConvBN().eval(), torch.randn(1, 3, 8, 8)
    with pytest.raises(InvalidArgumentError, match="exactly one list"):
        sc.plan_family(model, x, macs=[0.5], params=[0.5])
    with pytest.raises(InvalidTypeError, match="non-empty list"):
        sc.plan_family(model, x, macs=0.5)
    with pytest.raises(InvalidArgumentError, match="distinct"):
        sc.plan_family(model, x, macs=[0.5, 0.5])
    with pytest.raises(InvalidArgumentError, match="latency"):
        sc.plan_family(model, x, macs=[0.5], latency=0.5)
