"""Plans mixing exact and structural-only groups still compare the exact groups numerically."""

import pytest
import torch
from torch import nn

import secateurs as sc
from secateurs.errors import VerificationError
from secateurs.surgery import registry
from secateurs.testing.models import TinyViT


def test_vit_hidden_and_heads_is_partially_exact():
    model = TinyViT().eval()
    report = sc.prune(model, torch.randn(2, 3, 16, 16), ratio=0.5)
    v = report.verification
    assert v.ok and v.mode == "partial"
    assert v.rel_error is not None and v.rel_error <= v.tolerance
    kinds = {(g.kind, g.exact) for g in report.plan.groups if g.removed}
    assert ("heads", True) in kinds and any(not exact for _, exact in kinds)


def test_partial_check_catches_a_wrong_exact_group(monkeypatch):
    original = registry.find_handler(nn.Linear(1, 1))

    def corrupting(module, hints):
        original(module, hints)
        if module.out_features == 32:  # the pruned MLP hidden layer of TinyViT (64 -> 32)
            with torch.no_grad():
                module.weight.mul_(1.5)

    model = TinyViT().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with registry.HANDLERS.replaced(nn.Linear, corrupting), \
            pytest.raises(VerificationError, match="exactly-checkable groups"):
        sc.prune(model, torch.randn(2, 3, 16, 16), ratio=0.5)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_check_argument_is_validated():
    with pytest.raises(ValueError):
        sc.prune(TinyViT().eval(), torch.randn(1, 3, 16, 16), ratio=0.5, check="sometimes")
