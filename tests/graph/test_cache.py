"""Analyses are cached per process by structure and inputs: one capture for repeated plans, never a stale one."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import secateurs as sc
from secateurs.graph import cache
from secateurs.graph import capture as capture_mod
from secateurs.testing.models import TinyResNet, TinyViT


@pytest.fixture
def counted(monkeypatch):
    cache.clear()
    calls = []
    real = capture_mod.export_model

    def counting(model, x):
        calls.append(type(model).__name__)
        return real(model, x)

    monkeypatch.setattr(capture_mod, "export_model", counting)
    yield calls
    cache.clear()


def test_copies_of_one_architecture_share_one_capture(counted):
    torch.manual_seed(0)
    model, x = TinyResNet().eval(), torch.randn(1, 3, 32, 32)
    first = sc.plan(model, x, ratio=0.5)
    for _ in range(3):
        other = copy.deepcopy(model)
        with torch.no_grad():
            for p in other.parameters():
                p.mul_(torch.rand_like(p))  # other weights: other scores, same graph
        again = sc.plan(other, x, ratio=0.5)
        assert again.fingerprint == first.fingerprint
    assert counted == ["TinyResNet"]


@pytest.mark.parametrize("change", ["shape", "attribute", "dtype", "class", "registry"])
def test_anything_the_graph_depends_on_misses_the_cache(counted, change):
    from secateurs.graph.rules import RULES

    torch.manual_seed(0)
    model, x = TinyViT().eval(), torch.randn(2, 3, 16, 16)
    sc.analyze(model, x)
    other = copy.deepcopy(model)
    if change == "shape":
        x = torch.randn(3, 3, 16, 16)
    elif change == "attribute":
        other.blocks[0].head_dim = 4  # what forward reads to split heads
    elif change == "dtype":
        other = other.double()
        x = x.double()
    elif change == "class":
        other.head = type("OtherLinear", (nn.Linear,), {})(other.head.in_features, other.head.out_features)
    if change == "registry":
        with RULES.replaced("aten.not_an_op", lambda ctx: None):
            sc.analyze(other, x)
    else:
        sc.analyze(other, x)
    assert len(counted) == 2


def test_an_attribute_of_unknown_kind_is_not_cached(counted):
    class Holder(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.thing = object()  # nothing says what forward would read from it

        def forward(self, x):
            return self.fc(x)

    assert cache.structure_key(Holder(), torch.randn(1, 4)) is None
    model = Holder()
    sc.analyze(model, torch.randn(1, 4))
    sc.analyze(model, torch.randn(1, 4))
    assert len(counted) == 2


def test_the_cache_can_be_turned_off(counted, monkeypatch):
    monkeypatch.setenv("SECATEURS_CAPTURE_CACHE", "0")
    model, x = TinyResNet().eval(), torch.randn(1, 3, 32, 32)
    sc.analyze(model, x)
    sc.analyze(model, x)
    assert len(counted) == 2


def test_pruned_model_is_a_new_structure(counted):
    model, x = TinyResNet().eval(), torch.randn(1, 3, 32, 32)
    before = sc.analyze(model, x)
    sc.apply(model, sc.plan(model, x, ratio=0.5))
    after = sc.analyze(model, x)
    assert after is not before and after.fingerprint != before.fingerprint
