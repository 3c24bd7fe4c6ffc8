"""Magnitude norms read a large weight in float slices; the result equals the norms of the whole weight."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import secateurs as sc
from secateurs.graph import analysis
from secateurs.testing.models import TinyResNet


@pytest.mark.parametrize(("shape", "dim"), [((300, 70), 0), ((300, 70), 1), ((5, 300, 7), 1), ((40, 3, 3, 3), 0)])
def test_sliced_norms_equal_whole_norms(monkeypatch, shape, dim):
    t = torch.randn(*shape, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    whole = analysis._norm_part(t, dim, 2.0).numpy()
    monkeypatch.setattr(analysis, "NORM_CHUNK", 50)  # a few rows per slice
    sliced = analysis._index_norms(t, dim, 2.0)
    assert sliced.shape == whole.shape
    np.testing.assert_allclose(sliced, whole, rtol=1e-5)


def test_plans_are_the_same_with_sliced_norms(monkeypatch):
    torch.manual_seed(0)
    model, x = TinyResNet(width=8).eval(), torch.randn(1, 3, 16, 16)
    whole = sc.plan(model, x, ratio=0.5, importance="l2").keep
    monkeypatch.setattr(analysis, "NORM_CHUNK", 7)
    assert sc.plan(model, x, ratio=0.5, importance="l2").keep == whole
