"""Latency targets planned from per-layer lookup tables (fake timers: no wall-clock assertion)."""

import json

import pytest
import torch
from torch import nn

import secateurs as sc
from secateurs.errors import FileFormatError, InvalidArgumentError
from secateurs.selection.latency_table import LatencyTable, layer_specs
from secateurs.targets import LatencyTarget
from secateurs.testing.models import TinyResNet

CALLS = {"model": 0, "layer": 0}


def params_timer(model, args, kwargs) -> float:
    """Latency = parameter count (additive over layers, so the table predicts it exactly but for rounding)."""
    CALLS["layer" if isinstance(model, (nn.Conv2d, nn.Linear)) else "model"] += 1
    return float(sum(p.numel() for p in model.parameters()))


def _kept_params(model, plan):
    import copy

    m = copy.deepcopy(model)
    sc.apply(m, plan)
    return sum(p.numel() for p in m.parameters()) / sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("fraction", [0.4, 0.7])
def test_table_plan_meets_the_target_and_times_whole_models_twice(fraction, tmp_path):
    torch.manual_seed(0)
    model, x = TinyResNet().eval(), torch.randn(1, 3, 16, 16)
    CALLS.update(model=0, layer=0)
    path = str(tmp_path / "table.json")
    target = LatencyTarget(fraction, timer=params_timer, repeats=1, warmup=0, method="table", table=path)
    plan = sc.plan(model, x, latency=target)
    lat = plan.settings["latency"]
    assert lat["method"] == "table" and abs(lat["error"]) < 0.05  # prediction vs the measured (fake) latency
    assert lat["measured"] == pytest.approx(_kept_params(model, plan))
    assert abs(lat["measured"] / fraction - 1) <= 0.10
    assert CALLS["model"] == 3  # the unpruned model for the rest term, then the check: unpruned + chosen plan
    assert CALLS["layer"] == lat["layers_timed"] > 0
    # a second plan reuses the saved table: no layer is timed again
    CALLS.update(model=0, layer=0)
    plan2 = sc.plan(model, x, latency=target)
    assert CALLS["layer"] == 0 and plan2.settings["latency"]["layers_timed"] == 0
    with open(path) as f:
        assert json.load(f)["format"] == "secateurs-latency-table"


def test_table_interpolates_between_grid_widths():
    conv = nn.Conv2d(8, 16, 3, padding=1)
    spec = layer_specs(nn.Sequential(conv), torch.randn(1, 8, 6, 6))["0"]
    table = LatencyTable()
    table.measure({"0": spec}, lambda m, a, k: float(sum(p.numel() for p in m.parameters())), repeats=1, warmup=0)
    exact = 5 * 12 * 9 + 12  # weight + bias of a 5 -> 12 conv
    assert table.predict(spec, 5, 12) == pytest.approx(exact, rel=0.1)
    assert table.predict(spec, 8, 16) == pytest.approx(8 * 16 * 9 + 16)


def test_bad_table_settings_and_files(tmp_path):
    with pytest.raises(InvalidArgumentError, match="method"):
        LatencyTarget(0.5, method="guess")
    with pytest.raises(InvalidArgumentError, match=".json"):
        LatencyTarget(0.5, method="table", table="t.pkl")
    bad = tmp_path / "t.json"
    bad.write_text(json.dumps({"format": "secateurs-latency-table", "entries": {"k": {"cin": [1], "cout": [1], "ms": [1]}}}))
    with pytest.raises(FileFormatError, match="malformed"):
        LatencyTable.load(bad)
    bad.write_text("[" * 100000)
    with pytest.raises(FileFormatError):
        LatencyTable.load(bad)



def _convex_timer(full: float):
    """Layers cost their parameters, a whole model ``n * (n / full) ** 0.25`` for ``n`` parameters: the additive
    table predicts more kept latency than a pruned model really keeps (on resnet50 by 10-15%)."""

    def timer(model, args, kwargs) -> float:
        n = float(sum(p.numel() for p in model.parameters()))
        return n if isinstance(model, (nn.Conv2d, nn.Linear)) else n * (n / full) ** 0.25

    return timer


def test_a_table_that_misses_is_corrected_from_the_timed_check():
    torch.manual_seed(0)
    model, x = TinyResNet().eval(), torch.randn(1, 3, 16, 16)
    timer = _convex_timer(float(sum(p.numel() for p in model.parameters())))
    target = LatencyTarget(0.5, timer=timer, repeats=1, warmup=0, method="table")
    lat = sc.plan(model, x, latency=target).settings["latency"]
    assert lat["corrections"] >= 1 and lat["error"] < -0.05  # the table alone is off by more than 5%
    assert abs(lat["measured"] / 0.5 - 1) <= 0.05  # the re-aimed search lands within half the tolerance


class _CinTable:
    """A table whose layers cost their input width (1 ms per channel)."""

    def predict(self, spec, cin, cout) -> float:
        return float(cin)


def test_the_rest_shrinks_with_the_activations_the_layers_read():
    from secateurs.selection.latency_table import Predictor

    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    specs = layer_specs(model, torch.randn(2, 8))
    predictor = Predictor(_CinTable(), specs, rest_ms=12.0, full_ms=36.0)  # type: ignore[arg-type]
    assert predictor.predict(model) == pytest.approx(8 + 16 + 12)
    pruned = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))  # the hidden width halved
    # layers 8 + 8; the rest (the ReLU between them) scales with the inputs the layers read: (8 + 8) / (8 + 16)
    assert predictor.predict(pruned) == pytest.approx(8 + 8 + 12 * 16 / 24)
