"""A channel shuffle before a grouped conv: the plan is the masked original, or the shuffle's groups are kept."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import secateurs as sc
from secateurs.verification.oracle import masked_outputs


class ShuffleThenGroupedConv(nn.Module):
    """``view(n, g, c // g, h, w).transpose(1, 2).reshape(n, c, h, w)`` then a conv with ``groups=g`` (or 1)."""

    def __init__(self, c: int = 8, g: int = 2, conv_groups: int | None = None):
        super().__init__()
        self.g = g
        self.a = nn.Conv2d(3, c, 1)
        self.b = nn.Conv2d(c, c, 3, padding=1, groups=g if conv_groups is None else conv_groups)
        self.head = nn.Conv2d(c, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)
        n, c, h, w = y.shape
        y = y.view(n, self.g, c // self.g, h, w).transpose(1, 2).reshape(n, c, h, w)
        return self.head(torch.relu(self.b(y)))


@pytest.mark.parametrize("c,g,conv_groups", [(8, 2, None), (12, 3, None), (8, 2, 1), (12, 4, 2)])
def test_plan_and_apply_equal_the_masked_original(c, g, conv_groups):
    model = ShuffleThenGroupedConv(c, g, conv_groups).eval()
    x = torch.randn(2, 3, 6, 6)
    for ratio in (0.25, 0.5):
        plan = sc.plan(model, x, ratio=ratio)
        want = masked_outputs(model, plan, x)[0]
        pruned = copy.deepcopy(model)
        sc.apply(pruned, plan)
        torch.testing.assert_close(pruned(x), want, rtol=1e-4, atol=1e-5)
        assert pruned.g == g  # the shuffle's group count is untouched, so its view stays right


def test_shuffle_group_count_is_frozen_with_the_op_named():
    model = ShuffleThenGroupedConv().eval()
    analysis = sc.analyze(model, torch.randn(2, 3, 6, 6))
    reasons = [r for rs in analysis.structure.class_frozen.values() for r in rs if "channel shuffle" in r]
    assert reasons and "aten.view" in reasons[0] and "aten.reshape" in reasons[0]
    # no unit removes a whole shuffle group (channels g * 4 .. g * 4 + 3 of `a`)
    blocks = [list(range(k * 4, k * 4 + 4)) for k in range(2)]
    for group in analysis.groups:
        for m in group.members:
            if (m.fqn, m.dim) == ("a.weight", 0):
                for unit in range(group.n_units):
                    assert group.member_indices(m, np.array([unit])).tolist() not in blocks


def test_prune_verifies_a_shuffle_before_a_grouped_conv():
    model = ShuffleThenGroupedConv().eval()
    report = sc.prune(model, torch.randn(2, 3, 6, 6), ratio=0.5)
    assert report.verification.ok and report.verification.mode == "exact"
    assert report.plan.exact
