"""Failures leave the user's model exactly as it was."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import secateurs as sc
from secateurs.errors import ApplyError, CaptureError, VerificationError
from secateurs.surgery import registry
from secateurs.testing.models import TinyResNet


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(model, state):
    now = model.state_dict()
    return now.keys() == state.keys() and all(torch.equal(now[k], v) for k, v in state.items())


class Exploding(nn.Linear):
    pass


class UsesExploding(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = Exploding(6, 12)
        self.b = nn.Linear(12, 3)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def test_handler_failure_restores_model(monkeypatch):
    def boom(module, hints):
        raise RuntimeError("handler exploded")

    model = UsesExploding().eval()
    before = _state(model)
    p = sc.plan(model, torch.randn(2, 6), ratio=0.5)
    with registry.HANDLERS.replaced(Exploding, boom), pytest.raises(ApplyError, match="restored"):
        sc.apply(model, p)
    assert _same(model, before)
    assert model.a.out_features == 12 and model.b.in_features == 12
    assert isinstance(model.a.weight, nn.Parameter)


class HardCodedHeads(nn.Module):
    """Attention whose forward uses a constant head count that no handler knows about."""

    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(16, 48)
        self.out = nn.Linear(16, 16)

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, 4, 4).permute(2, 0, 3, 1, 4).unbind(0)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.out(y.transpose(1, 2).reshape(b, n, 16))


def test_a_constant_head_count_is_left_out_with_the_reason_and_the_model_untouched():
    model = HardCodedHeads().eval()
    x = torch.randn(1, 5, 16)
    before = _state(model)
    with pytest.warns(sc.errors.NothingPrunedWarning):
        report = sc.prune(model, x, ratio={"heads": 0.5})
    assert report.plan.removed_units() == 0 and report.verification.ok
    assert any("written as a constant in forward()" in n for n in report.plan.settings["notes"])
    assert _same(model, before) and model.qkv.out_features == 48


def _wrong_heads(module, hints):  # a handler that refreshes the attribute wrongly: the pruned model cannot run
    module.heads = 3


class AttributeHeads(HardCodedHeads):
    def __init__(self):
        super().__init__()
        self.heads = 4

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.out(y.transpose(1, 2).reshape(b, n, -1))


def test_failed_verification_restores_model_and_names_the_fix():
    model = AttributeHeads().eval()
    x = torch.randn(1, 5, 16)
    before = _state(model)
    assert sc.prune(copy.deepcopy(model), x, ratio={"heads": 0.5}).verification.ok  # the binding rewrites heads
    with registry.HANDLERS.replaced(AttributeHeads, _wrong_heads), \
            pytest.raises(VerificationError, match="register_handler|ignore"):
        sc.prune(model, x, ratio={"heads": 0.5})
    assert _same(model, before) and model.heads == 4
    assert model.qkv.out_features == 48


def test_capture_error_is_clear_and_model_untouched():
    model = TinyResNet().eval()
    before = _state(model)
    with pytest.raises(CaptureError, match="example inputs"):
        sc.prune(model, torch.randn(1, 5, 16, 16), ratio=0.5)  # wrong channel count
    assert _same(model, before)


def test_non_module_is_a_type_error():
    with pytest.raises(TypeError):
        sc.analyze(lambda x: x, torch.randn(1))
