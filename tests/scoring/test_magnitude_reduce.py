"""Magnitude criteria with a reduction across group members: group norm, sum, mean, max."""

import numpy as np
import pytest
import torch

import secateurs as sc
from secateurs.errors import InvalidArgumentError
from secateurs.scoring.magnitude import magnitude
from secateurs.scoring.registry import ScoringContext
from secateurs.testing.toys import MLP


def _setup():
    torch.manual_seed(0)
    m = MLP().eval()
    (g,) = sc.analyze(m, torch.randn(2, 6)).groups
    ctx = ScoringContext(m, dict(m.state_dict(keep_vars=True)), 0)
    w1, b1, w2 = m.fc1.weight.detach(), m.fc1.bias.detach(), m.fc2.weight.detach()
    per_member = np.stack([w1.norm(dim=1).numpy(), b1.abs().numpy(), w2.norm(dim=0).numpy()])
    return g, ctx, per_member, (w1, b1, w2)


@pytest.mark.parametrize("how", ["sum", "mean", "max"])
def test_member_reductions(how):
    g, ctx, per_member, _ = _setup()
    got = magnitude(2, reduce=how).scores(g, ctx)
    np.testing.assert_allclose(got, getattr(np, how)(per_member, axis=0), rtol=1e-5)


def test_group_norm_is_the_default():
    g, ctx, _, (w1, b1, w2) = _setup()
    expected = np.sqrt((w1**2).sum(1).numpy() + (b1**2).numpy() + (w2**2).sum(0).numpy())
    np.testing.assert_allclose(magnitude(2).scores(g, ctx), expected, rtol=1e-5)


def test_max_keeps_a_unit_one_consumer_relies_on():
    g, ctx, _, _ = _setup()
    m = ctx.model
    with torch.no_grad():
        m.fc1.weight.mul_(0.01)
        m.fc1.bias.zero_()
        m.fc2.weight.mul_(0.01)
        m.fc2.weight[:, 4] = 1.0  # unit 4: tiny producer weights, one strong consumer column
    ctx = ScoringContext(m, dict(m.state_dict(keep_vars=True)), 0)
    assert int(np.argmax(magnitude(2, reduce="max").scores(g, ctx))) == 4
    p = sc.plan(m, torch.randn(2, 6), ratio=0.5, importance=magnitude(2, reduce="max"))
    assert 4 not in p.groups[0].removed


def test_bad_reduce():
    with pytest.raises(InvalidArgumentError, match="group, sum, mean, max"):
        magnitude(2, reduce="median")
