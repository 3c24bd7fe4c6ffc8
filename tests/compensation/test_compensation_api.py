"""sc.prune(compensate=...) and sc.compensate: error reduction, errors, transactions, replayed plans, saving."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from torch import nn

import secateurs as sc
from secateurs.calibration import collect
from secateurs.compensation import METHODS, Compensation, gather
from secateurs.compensation.lstsq import LeastSquares
from secateurs.errors import ApplyError, InvalidArgumentError
from secateurs.testing.models import ConcatNet, TinyResNet
from secateurs.testing.toys import ConvBN, DeepMLP


def data_for(shape: tuple[int, ...], n: int = 4) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(*shape, generator=g) for _ in range(n)]


MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "mlp": (lambda: DeepMLP(), (64, 8)),
    "convbn": (lambda: ConvBN(), (4, 3, 8, 8)),
    "resnet": (lambda: TinyResNet(width=8), (4, 3, 16, 16)),
}


def fresh(name: str) -> tuple[nn.Module, list[torch.Tensor]]:
    factory, shape = MODELS[name]
    torch.manual_seed(0)
    return factory().eval(), data_for(shape)


def test_registered_methods() -> None:
    assert METHODS.names() == ["bias", "lstsq"]


@pytest.mark.parametrize("method", ["bias", "lstsq"])
@pytest.mark.parametrize("importance", ["wanda", "fluctuation"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_compensation_reduces_output_error(name: str, importance: str, method: str) -> None:
    model, data = fresh(name)
    with torch.no_grad():
        reference = model(data[0])
    r = sc.prune(model, data[0], ratio=0.4, importance=importance, calibration=data, compensate=method)
    c = r.compensation
    assert c is not None and c.method == method and c.layers
    assert c.error_before is not None and c.error_after is not None
    assert c.error_after < c.error_before
    with torch.no_grad():  # the reported error is the model's
        measured = float((model(data[0]) - reference).norm() / reference.norm())
    assert measured == pytest.approx(c.error_after, rel=1e-4)
    assert r.verification is not None and r.verification.ok  # verified before the refit
    rec = sc.Plan.from_json(r.plan.to_json()).settings["compensation"]
    assert rec["method"] == method and rec["layers"] == len(c.layers) and rec["batches"] == len(data)
    assert "compensation" in r.summary() and r.to_dict()["compensation"]["error_after"] == c.error_after


def test_missing_calibration_is_a_clear_error() -> None:
    model, data = fresh("mlp")
    with pytest.raises(InvalidArgumentError, match="calibration="):
        sc.prune(model, data[0], ratio=0.5, compensate="lstsq")
    with pytest.raises(InvalidArgumentError, match="'bias', 'lstsq'"):
        sc.prune(model, data[0], ratio=0.5, compensate="obs", calibration=data)
    with pytest.raises(InvalidArgumentError, match="one-shot iterator"):
        sc.prune(model, data[0], ratio=0.5, importance="wanda", calibration=iter(data), compensate="bias")
    stats = collect(model, data)
    with pytest.raises(InvalidArgumentError, match="not precomputed Statistics"):
        sc.prune(model, data[0], ratio=0.5, importance="wanda", calibration=stats, compensate="bias")
    assert model.fc1.out_features == 16  # nothing was pruned


def test_compensate_needs_the_pruned_model_and_matching_statistics() -> None:
    model, data = fresh("mlp")
    plan = sc.plan(model, data[0], ratio=0.5)
    stats = gather(model, plan, data, method="bias")
    with pytest.raises(InvalidArgumentError, match="after sc.apply"):
        sc.compensate(model, plan, stats)
    sc.apply(model, plan)
    with pytest.raises(InvalidArgumentError, match="needs Gram"):
        sc.compensate(model, plan, stats, method="lstsq")
    with pytest.raises(InvalidArgumentError, match="ridge"):
        sc.compensate(model, plan, stats, ridge=-1.0)
    assert sc.compensate(model, plan, stats).method == "bias"


def test_compensate_is_transactional(monkeypatch: pytest.MonkeyPatch) -> None:
    model, data = fresh("convbn")
    plan = sc.plan(model, data[0], ratio=0.5)
    stats = gather(model, plan, data, method="lstsq")
    sc.apply(model, plan)
    before = {k: (id(v), v.detach().clone()) for k, v in model.state_dict(keep_vars=True).items()}
    calls = []
    real = LeastSquares.fit

    def flaky(self, c, m, **kw):  # the second layer fails after the first was written
        calls.append(c.path)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return real(self, c, m, **kw)

    monkeypatch.setattr(LeastSquares, "fit", flaky)
    with pytest.raises(ApplyError, match="restored unchanged"):
        sc.compensate(model, plan, stats)
    after = model.state_dict(keep_vars=True)
    assert set(after) == set(before)  # no bias left behind
    for k, (ident, value) in before.items():
        assert id(after[k]) == ident and torch.equal(after[k], value)
    assert "compensation" not in plan.settings


def test_prune_restores_the_unpruned_model_when_compensation_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    model, data = fresh("convbn")
    state = {k: v.clone() for k, v in model.state_dict().items()}

    def broken(self, c, m, **kw):
        raise RuntimeError("boom")

    monkeypatch.setattr(LeastSquares, "fit", broken)
    with pytest.raises(ApplyError):
        sc.prune(model, data[0], ratio=0.5, calibration=data, compensate="lstsq")
    after = model.state_dict()
    assert set(after) == set(state) and all(torch.equal(after[k], v) for k, v in state.items())
    assert model.conv1.out_channels == 8


def test_replayed_plan_from_json() -> None:
    model, data = fresh("convbn")
    original = copy.deepcopy(model)
    plan = sc.plan(model, data[0], ratio=0.5, importance="fluctuation", calibration=data)
    replayed = sc.Plan.from_json(plan.to_json())
    with torch.no_grad():
        reference = original(data[0])
    stats = gather(original, replayed, data, method="lstsq")
    sc.apply(original, replayed)
    with torch.no_grad():
        before = float((original(data[0]) - reference).norm())
    result = sc.compensate(original, replayed, stats)
    with torch.no_grad():
        after = float((original(data[0]) - reference).norm())
    assert after < before and result.layers == ["conv2", "fc"]
    assert sc.Plan.from_json(replayed.to_json()).settings["compensation"]["added_biases"] == {"conv2": 8}


def test_save_and_load_recreate_added_biases(tmp_path) -> None:
    model, data = fresh("convbn")
    r = sc.prune(model, data[0], ratio=0.5, importance="wanda", calibration=data, compensate="bias")
    assert r.compensation is not None and r.compensation.added_biases == {"conv2": 8}
    sc.save(model, r.plan, tmp_path / "pruned")
    loaded = sc.load(tmp_path / "pruned", model_factory=lambda: fresh("convbn")[0])
    with torch.no_grad():
        torch.testing.assert_close(loaded(data[1]), model(data[1]))
    assert loaded.conv2.bias is not None


def test_grouped_conv_falls_back_to_bias_under_lstsq() -> None:
    torch.manual_seed(0)
    model, x = ConcatNet().eval(), torch.randn(4, 3, 16, 16)
    data = [torch.randn(4, 3, 16, 16) for _ in range(3)] + [x]
    r = sc.prune(model, x, ratio=0.5, importance="wanda", calibration=data, compensate="lstsq")
    c = r.compensation
    assert c is not None and "grouped" in c.layers and c.error_after < c.error_before
    assert any(n.startswith("grouped: grouped convolution") for n in c.notes)


def test_compensation_config_sets_ridge_and_bias_policy() -> None:
    model, data = fresh("convbn")
    r = sc.prune(model, data[0], ratio=0.5, importance="wanda", calibration=data,
                 compensate=Compensation("lstsq", ridge=1e-2, add_bias=False))
    assert r.compensation is not None and not r.compensation.added_biases and model.conv2.bias is None
    rec = r.plan.settings["compensation"]
    assert rec["ridge"] == 1e-2 and rec["add_bias"] is False
    assert rec["error_after"] < rec["error_before"]
    with pytest.raises(InvalidArgumentError, match="ridge"):
        Compensation("lstsq", ridge=float("nan"))
