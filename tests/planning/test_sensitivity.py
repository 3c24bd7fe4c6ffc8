"""sensitivity(): each group pruned alone at several ratios; table, plot, and ratios fed back into a plan."""

from __future__ import annotations

import copy
import json

import pytest
import torch

import secateurs as sc
from secateurs.errors import InvalidArgumentError
from secateurs.planning.sensitivity import output_fidelity
from secateurs.planning.sensitivity_result import SensitivityResult
from secateurs.testing.models import TinyResNet
from secateurs.testing.toys import ConvBN, DeepMLP


def _deep_mlp_with_a_fragile_layer() -> torch.nn.Module:
    """fc1/fc2 hidden units (group A) carry the signal; fc2/fc3 units (group B) are mostly dead."""
    torch.manual_seed(0)
    model = DeepMLP(d_in=8, hidden=16, d_out=4).eval()
    with torch.no_grad():
        model.fc2.weight[4:] = 0  # group B: only 4 of 16 units do anything
        model.fc2.bias[4:] = 0
    return model


def test_one_row_per_group_and_ratio_and_the_model_is_untouched() -> None:
    model, x = _deep_mlp_with_a_fragile_layer(), torch.randn(16, 8)
    before = copy.deepcopy(model.state_dict())
    result = sc.sensitivity(model, x, ratios=(0.25, 0.5, 0.75), progress=False)
    assert result.keys() == ["group:fc1.bias[dim 0]", "group:fc2.bias[dim 0]"]
    assert len(result.rows) == 6 and result.baseline == pytest.approx(1.0)
    assert "output fidelity" in result.metric
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    dead = result.curve("group:fc2.bias[dim 0]")
    assert [r.removed for r in dead] == [4, 8, 12]
    assert all(r.drop == pytest.approx(0.0, abs=1e-12) for r in dead)  # removing dead units changes nothing
    live = result.curve("group:fc1.bias[dim 0]")
    assert live[-1].drop > 0 and all(0 < r.params < 1 for r in live)


def test_user_metric_lower_is_better_and_overrides_feed_back_into_a_plan() -> None:
    model, x = _deep_mlp_with_a_fragile_layer(), torch.randn(16, 8)
    target = model(x).detach()

    def mse(m: torch.nn.Module) -> float:
        with torch.no_grad():
            return float(torch.nn.functional.mse_loss(m(x), target))

    result = sc.sensitivity(model, x, mse, ratios=(0.25, 0.5, 0.75), higher_is_better=False, progress=False)
    assert result.baseline == 0.0 and result.metric == "mse"
    over = result.overrides(max_drop=1e-9)
    assert over == {"group:fc1.bias[dim 0]": 0.0, "group:fc2.bias[dim 0]": 0.75}
    plan = sc.plan(model, x, ratio=0.0, overrides=over)
    removed = {g.name: len(g.removed) for g in plan.groups}
    assert removed["fc2.bias[dim 0]"] == 12 and removed["fc1.bias[dim 0]"] == 0
    pruned = copy.deepcopy(model)
    sc.apply(pruned, plan)
    assert mse(pruned) == pytest.approx(0.0, abs=1e-10)


def test_table_dict_and_plot(tmp_path) -> None:
    model, x = ConvBN(width=8).eval(), torch.randn(2, 3, 8, 8)
    result = sc.sensitivity(model, x, ratios=[0.5, 0.25], progress=False)
    assert result.ratios == [0.25, 0.5]
    md = result.to_markdown()
    assert "| group | layers | kind | units | 0.25 | 0.5 |" in md and "`bn1.bias[dim 0]`" in md
    assert "| `bn1.bias[dim 0]` | conv1 | channels | 8 |" in md
    doc = json.loads(json.dumps(result.to_dict()))
    assert doc["rows"][0]["key"].startswith("group:")
    again = SensitivityResult.from_dict(doc)
    assert again.to_markdown() == md and again.overrides(0.01) == result.overrides(0.01)
    png = result.plot(tmp_path / "s.png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / "s.png").read_bytes() == png


def test_module_patterns_prune_every_matching_group_together() -> None:
    model, x = TinyResNet().eval(), torch.randn(1, 3, 16, 16)
    result = sc.sensitivity(model, x, ratios=(0.5,), groups=["layer1.*", "fc"], progress=False)
    assert result.keys() == ["layer1.*", "fc"]
    over = result.overrides(max_drop=1.0)
    assert over == {"layer1.*": 0.5, "fc": 0.5}
    with pytest.raises(InvalidArgumentError, match="matches no prunable group"):
        sc.sensitivity(model, x, ratios=(0.5,), groups=["nope.*"], progress=False)


def test_bad_arguments() -> None:
    model, x = DeepMLP().eval(), torch.randn(2, 8)
    with pytest.raises(InvalidArgumentError, match="ratios"):
        sc.sensitivity(model, x, ratios=(0.0, 0.5), progress=False)
    with pytest.raises(InvalidArgumentError, match="calibration"):
        sc.sensitivity(model, x, ratios=(0.5,), importance="activation", progress=False)
    result = sc.sensitivity(model, x, ratios=(0.5,), progress=False)
    with pytest.raises(InvalidArgumentError, match="max_drop"):
        result.overrides(max_drop=-1)


def test_output_fidelity_is_one_for_the_same_model() -> None:
    model, x = DeepMLP().eval(), torch.randn(2, 8)
    assert output_fidelity(model, x)(copy.deepcopy(model)) == pytest.approx(1.0)


def test_group_keys_in_overrides_name_one_group_exactly() -> None:
    model, x = DeepMLP().eval(), torch.randn(2, 8)
    plan = sc.plan(model, x, ratio=0.0, overrides={"group:fc2.bias[dim 0]": 0.5})
    assert {g.name: len(g.removed) for g in plan.groups} == {"fc1.bias[dim 0]": 0, "fc2.bias[dim 0]": 8}
    with pytest.warns(UserWarning, match="names no parameter"):
        sc.plan(model, x, ratio=0.0, overrides={"group:nothing.weight[dim 0]": 0.5})
