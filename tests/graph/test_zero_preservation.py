"""Reductions and contractions over a pruned dim are exact only where removed units are zero in the masked
original: after a linear layer, relu or a product, yes; after sigmoid, exp, cos, ``+ 1`` or ``>= 0``, no."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from torch import nn

import secateurs as sc
from secateurs.verification.oracle import masked_outputs

T = torch.Tensor


class SumAfter(nn.Module):
    """``fc2(h) * f(h).sum(-1)``: the reduction sees every hidden unit after ``f``."""

    def __init__(self, f: Callable[[T], T]):
        super().__init__()
        self.f = f
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 4)

    def forward(self, x: T) -> T:
        h = self.fc1(x)
        return self.fc2(h) * self.f(h).sum(-1, keepdim=True)


def _hidden_group(model: nn.Module, x: T):
    analysis = sc.analyze(model, x)
    return next(g for g in analysis.groups if any((m.fqn, m.dim) == ("fc1.weight", 0) for m in g.members)), analysis


ZERO_PRESERVING = {
    "identity": lambda h: h,
    "relu": torch.relu,
    "tanh": torch.tanh,
    "times_two": lambda h: 2 * h,
    "square": lambda h: h * h,
    "gt_zero": lambda h: (h > 0).float(),
    "div_by_constant": lambda h: h / 3,
    "abs_norm": lambda h: h.abs(),
}
NOT_ZERO_PRESERVING = {
    "sigmoid": torch.sigmoid,
    "exp": torch.exp,
    "cos": torch.cos,
    "plus_one": lambda h: h + 1,
    "ge_zero": lambda h: (h >= 0).float(),
    "elu_plus_one": lambda h: nn.functional.elu(h) + 1,
}


@pytest.mark.parametrize("name", sorted(ZERO_PRESERVING))
def test_sum_of_zero_preserving_values_is_exact(name):
    model, x = SumAfter(ZERO_PRESERVING[name]).eval(), torch.randn(4, 8)
    group, _ = _hidden_group(model, x)
    assert group.exact, group.inexact_reasons
    report = sc.prune(model, x, ratio=0.5)
    assert report.verification.mode == "exact"


@pytest.mark.parametrize("name", sorted(NOT_ZERO_PRESERVING))
def test_sum_of_values_not_zero_at_removed_units_is_inexact(name):
    model, x = SumAfter(NOT_ZERO_PRESERVING[name]).eval(), torch.randn(4, 8)
    group, _ = _hidden_group(model, x)
    assert not group.exact
    assert any("aten.sum" in r and "not zero where units are removed" in r for r in group.inexact_reasons)
    report = sc.prune(model, x, ratio=0.5)
    assert report.verification.ok and report.verification.mode == "structural"


class CountAfter(nn.Module):
    """A count output over the hidden units: ``(h >= 0).sum(-1)`` counts removed units as non-negative."""

    def __init__(self, count: Callable[[T], T]):
        super().__init__()
        self.count = count
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 4)

    def forward(self, x: T) -> tuple[T, T]:
        h = self.fc1(x)
        return self.fc2(h), self.count(h)


@pytest.mark.parametrize("count", [
    lambda h: (h >= 0).sum(-1),
    lambda h: torch.count_nonzero(torch.sigmoid(h), dim=-1),
    lambda h: (h.exp() > 0.5).any(-1),
])
def test_integer_result_from_values_not_zero_at_removed_units_freezes(count):
    model, x = CountAfter(count).eval(), torch.randn(4, 8)
    analysis = sc.analyze(model, x)
    assert not any(("fc1.weight", 0) in [(m.fqn, m.dim) for m in g.members] for g in analysis.groups)
    reasons = [r for rs in analysis.structure.class_frozen.values() for r in rs if "integer/bool result" in r]
    assert reasons
    plan = sc.plan(model, x, ratio=0.5)  # fc1's width is kept; plan + apply is the masked original
    want = masked_outputs(model, plan, x)
    pruned = copy.deepcopy(model)
    sc.apply(pruned, plan)
    for a, b in zip(want, pruned(x), strict=True):
        assert torch.equal(a, b) if not a.is_floating_point() else torch.allclose(a, b, atol=1e-6)


def test_count_of_zero_preserving_values_stays_exact():
    model, x = CountAfter(lambda h: (torch.relu(h) > 0).sum(-1)).eval(), torch.randn(4, 8)
    report = sc.prune(model, x, ratio=0.5)
    assert report.verification.mode == "exact" and report.plan.removed_units() > 0


class KernelAttention(nn.Module):
    """Linear attention with the feature map ``elu + 1`` (not zero at 0): ``phi(q) @ phi(k)^T`` over head_dim."""

    def __init__(self, d: int = 8):
        super().__init__()
        self.q, self.k, self.v, self.o = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x: T) -> T:
        phi = lambda t: nn.functional.elu(t) + 1  # noqa: E731
        scores = phi(self.q(x)) @ phi(self.k(x)).transpose(-1, -2)
        return self.o(scores @ self.v(x))


def test_contraction_of_two_non_zero_operands_is_inexact():
    model, x = KernelAttention().eval(), torch.randn(2, 5, 8)
    analysis = sc.analyze(model, x)
    group = next(g for g in analysis.groups if any((m.fqn, m.dim) == ("q.weight", 0) for m in g.members))
    assert not group.exact and any("aten.matmul" in r for r in group.inexact_reasons)


def test_contraction_with_a_zero_operand_stays_exact():
    class PlainAttention(KernelAttention):
        def forward(self, x: T) -> T:
            scores = torch.sigmoid(self.q(x)) @ self.k(x).transpose(-1, -2)
            return self.o(scores @ self.v(x))

    model, x = PlainAttention().eval(), torch.randn(2, 5, 8)
    group = next(g for g in sc.analyze(model, x).groups if any((m.fqn, m.dim) == ("q.weight", 0) for m in g.members))
    assert group.exact
