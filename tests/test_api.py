import copy

import pytest
import torch

import secateurs as sc
from secateurs.errors import InvalidArgumentError, PlanError
from secateurs.testing.models import ConcatNet, TinyResNet, TinyViT


@pytest.mark.parametrize("factory,ratio", [(TinyResNet, 0.3), (ConcatNet, 0.5), (TinyViT, 0.3)])
def test_prune_matches_masked_original(factory, ratio):
    model = factory().eval()
    x = torch.randn(2, 3, 16, 16)
    report = sc.prune(model, x, ratio=ratio)
    assert report.verification is not None and report.verification.ok
    assert report.params_after < report.params_before
    assert model(x).shape == factory().eval()(x).shape
    assert report.plan.removed_units() > 0


def test_plan_json_round_trip_replays_on_fresh_copy():
    model = TinyResNet().eval()
    fresh = copy.deepcopy(model)
    x = torch.randn(1, 3, 16, 16)
    p = sc.plan(model, x, ratio=0.5)
    p2 = sc.Plan.from_json(p.to_json())
    assert p2.keep == p.keep and p2.fingerprint == p.fingerprint
    sc.apply(model, p)
    sc.apply(fresh, p2)
    torch.testing.assert_close(model(x), fresh(x))


def test_apply_to_wrong_model_is_refused_and_model_untouched():
    p = sc.plan(TinyResNet(width=32).eval(), torch.randn(1, 3, 16, 16), ratio=0.5)
    other = TinyResNet(width=16).eval()
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(PlanError):
        sc.apply(other, p)
    for k, v in other.state_dict().items():
        assert torch.equal(v, before[k])


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5, "a"])
def test_bad_ratio_is_a_clear_error(ratio):
    with pytest.raises((InvalidArgumentError, TypeError)):
        sc.plan(TinyResNet().eval(), torch.randn(1, 3, 16, 16), ratio=ratio)


def test_count_drops_after_pruning():
    model = TinyResNet().eval()
    x = torch.randn(1, 3, 16, 16)
    macs, params = sc.count(model, x)
    sc.prune(model, x, ratio=0.5)
    macs2, params2 = sc.count(model, x)
    assert macs2 < 0.4 * macs and params2 < 0.4 * params


def test_bfloat16_model_verifies_with_dtype_tolerance():
    model = TinyResNet().eval().to(torch.bfloat16)
    x = torch.randn(1, 3, 16, 16, dtype=torch.bfloat16)
    report = sc.prune(model, x, ratio=0.5)
    assert report.verification.ok and report.verification.tolerance == pytest.approx(3e-2)
    assert model.fc.weight.dtype == torch.bfloat16


def test_apply_refuses_what_is_not_a_plan_or_a_module():
    import pytest

    from secateurs.errors import InvalidTypeError
    from secateurs.testing.toys import MLP

    with pytest.raises(InvalidTypeError, match="plan must be a secateurs.Plan"):
        sc.apply(MLP(), "x")
    with pytest.raises(InvalidTypeError, match="model must be"):
        sc.apply("model", sc.plan(MLP(), torch.randn(2, 6), ratio=0.5))
