"""uniform=True/False: same width in every layer (local ranking) or widths that may differ (global)."""

import pytest
import torch

import secateurs as sc
from secateurs.errors import InvalidArgumentError
from secateurs.testing.models import TinyResNet


def _widths(p):
    return sorted({g.n_units - len(g.removed) for g in p.groups if g.removed and g.n_units == 32})


def test_uniform_switches_between_local_and_global():
    torch.manual_seed(0)
    model, x = TinyResNet().eval(), torch.randn(1, 3, 16, 16)
    a = sc.analyze(model, x)
    uniform = sc.plan(model, x, ratio=0.5, uniform=True, analysis=a)
    free = sc.plan(model, x, ratio=0.5, uniform=False, analysis=a)
    assert uniform.config.scope == "local" and free.config.scope == "global"
    assert len(_widths(uniform)) == 1  # every 32-wide group keeps 16
    assert sc.plan(model, x, ratio=0.5, scope="global", analysis=a).groups == free.groups


def test_uniform_true_with_global_scope_is_a_clear_error():
    with pytest.raises(InvalidArgumentError, match="uniform=True"):
        sc.plan(TinyResNet(), torch.randn(1, 3, 16, 16), ratio=0.5, uniform=True, scope="global")
    with pytest.raises(InvalidArgumentError, match="uniform must be"):
        sc.plan(TinyResNet(), torch.randn(1, 3, 16, 16), ratio=0.5, uniform="yes")
