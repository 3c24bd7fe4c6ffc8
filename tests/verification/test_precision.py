"""A float32 comparison that fails on rounding is decided again in float64; a real difference still fails."""

import pytest
import torch
from torch import nn

import secateurs as sc
from secateurs.errors import VerificationError
from secateurs.surgery import registry
from secateurs.verification import outputs


def _deep_mlp(width: int = 64) -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Linear(64, width), nn.ReLU()]
    for _ in range(5):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 8)).eval()


@pytest.fixture
def strict_float32(monkeypatch):
    """A float32 tolerance no comparison meets, as a deep model's rounding would exceed it (how much rounding a
    small model shows depends on the thread count and kernels): every float32 check goes on to float64."""
    monkeypatch.setitem(outputs.TOLERANCE, torch.float32, -1.0)


def test_rounding_is_settled_in_float64(strict_float32):
    model, x = _deep_mlp(), torch.randn(4, 64)
    report = sc.prune(model, x, ratio=0.5)
    v = report.verification
    assert v.ok and v.mode == "exact"
    assert "verified in float64" in v.message and "is rounding" in v.message
    assert v.rel_error is not None and v.rel_error <= 1e-8 and v.tolerance == outputs.TOLERANCE[torch.float64]
    assert report.params_after < report.params_before
    assert next(model.parameters()).dtype == torch.float32  # the model itself stays float32, pruned
    assert model[0].out_features == 32


def test_a_real_difference_fails_in_float64_too(strict_float32):
    original = registry.find_handler(nn.Linear(1, 1))

    def off_by_1e5(module, hints):
        original(module, hints)
        with torch.no_grad():
            module.weight.mul_(1 + 1e-5)

    model, x = _deep_mlp(), torch.randn(4, 64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with registry.HANDLERS.replaced(nn.Linear, off_by_1e5), \
            pytest.raises(VerificationError, match="differs from the masked original"):
        sc.prune(model, x, ratio=0.5)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_sc_verify_settles_rounding_too(strict_float32):
    model, x = _deep_mlp(), torch.randn(4, 64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    plan = sc.plan(model, x, ratio=0.5)
    sc.apply(model, plan)
    v = sc.verify(before, model, plan, x)
    assert v.ok and "verified in float64" in v.message


def test_an_explicit_tolerance_is_not_second_guessed(strict_float32):
    model, x = _deep_mlp(), torch.randn(4, 64)
    with pytest.raises(VerificationError, match="tolerance 1e-12"):
        sc.prune(model, x, ratio=0.5, tolerance=1e-12)


def test_partial_plans_settle_their_exact_groups_in_float64(strict_float32):
    torch.manual_seed(0)
    normalised = nn.Sequential(nn.Linear(100, 48), nn.LayerNorm(48), nn.Linear(48, 8))  # 48: structural only
    model = nn.Sequential(*list(_deep_mlp(100))[:-1], normalised).eval()
    report = sc.prune(model, torch.randn(4, 64), ratio=0.5)
    v = report.verification
    assert v.ok and v.mode == "partial"
    assert "in float64" in v.message and v.rel_error <= 1e-8
