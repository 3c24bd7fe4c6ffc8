"""Global ranking across groups, per-group limits, overrides and normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import secateurs as sc
from secateurs.calibration import collect
from secateurs.errors import InvalidArgumentError, InvalidTypeError
from secateurs.selection.normalize import NORMALIZERS, normalize
from secateurs.testing.toys import DeepMLP, MultiHeadAttention

X = torch.randn(4, 8)


def skewed() -> DeepMLP:
    """Group of fc1 units: half of them 100x smaller than the rest; group of fc2 units: all alike."""
    torch.manual_seed(0)
    m = DeepMLP().eval()
    with torch.no_grad():
        m.fc1.weight[::2] *= 0.01
        m.fc1.bias[::2] *= 0.01
        m.fc2.weight[:, ::2] *= 0.01
    return m


def removed(plan: sc.Plan) -> dict[str, int]:
    return {g.name.split(".")[0]: len(g.removed) for g in plan.groups}


def test_local_removes_the_same_share_of_every_group() -> None:
    assert removed(sc.plan(skewed(), X, ratio=0.25)) == {"fc1": 4, "fc2": 4}


def test_global_takes_units_where_they_matter_least() -> None:
    p = sc.plan(skewed(), X, ratio=0.25, scope="global")
    assert removed(p) == {"fc1": 8, "fc2": 0}
    fc1 = next(g for g in p.groups if g.name.startswith("fc1"))
    assert fc1.removed == list(range(0, 16, 2))
    assert p.config.scope == "global" and p.settings["normalize"] == "mean"


def test_max_ratio_caps_each_group() -> None:
    p = sc.plan(skewed(), X, ratio=0.25, scope="global", max_ratio=0.25)
    assert removed(p) == {"fc1": 4, "fc2": 4}
    assert p.config.max_ratio == 0.25


def test_min_keep_and_round_to_in_global_scope() -> None:
    p = sc.plan(skewed(), X, ratio=0.4, scope="global", min_keep=12)
    assert max(removed(p).values()) <= 4
    p = sc.plan(skewed(), X, ratio=0.3, scope="global", round_to=4)
    for g in p.groups:
        assert (g.n_units - len(g.removed)) % 4 == 0


def test_overrides_fix_the_ratio_of_matching_modules() -> None:
    p = sc.plan(skewed(), X, ratio=0.25, scope="global", overrides={"fc1": 0.75})
    got = removed(p)
    assert got["fc1"] == 12  # fixed by the override, outside the global pool
    assert got["fc2"] == 4  # the pool now holds only fc2's group: a quarter of it
    assert p.config.overrides == {"fc1": 0.75}
    assert removed(sc.plan(skewed(), X, ratio=0.5, overrides={"fc3": 0.0})) == {"fc1": 8, "fc2": 0}


def test_normalisation_changes_the_global_choice() -> None:
    m = skewed()
    with torch.no_grad():  # make fc2's group uniformly small in raw terms, but flat
        m.fc2.weight.mul_(1e-3)
        m.fc2.bias.mul_(1e-3)
        m.fc3.weight.mul_(1e-3)
    assert removed(sc.plan(m, X, ratio=0.25, scope="global", normalize="none"))["fc2"] == 8
    assert removed(sc.plan(m, X, ratio=0.25, scope="global", normalize="mean"))["fc1"] == 8


def test_normalizers() -> None:
    s = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(normalize(s, "mean"), s / 2)
    np.testing.assert_allclose(normalize(s, "max"), s / 3)
    np.testing.assert_allclose(normalize(s, "standardize"), (s - 2) / s.std())
    np.testing.assert_allclose(normalize(np.zeros(3), "mean"), 0)
    assert set(NORMALIZERS) == {"none", "mean", "max", "standardize"}


def test_lamp_defaults_to_raw_scores_in_global_ranking() -> None:
    assert sc.plan(skewed(), X, ratio=0.25, scope="global", importance="lamp").settings["normalize"] == "none"


def test_heads_are_removed_whole_in_global_scope() -> None:
    model = MultiHeadAttention().eval()
    x = torch.randn(1, 5, 16)
    report = sc.prune(model, x, ratio=0.5, scope="global")
    assert report.verification is not None and report.verification.ok
    heads = next(g for g in report.plan.groups if g.kind == "heads")
    assert len(heads.removed) == 2
    kept = report.plan.keep["q.weight"][0]
    assert len(kept) == 8 and all(i % 4 == 0 for i in kept[::4]) and kept == sorted(kept)
    assert {kept[i + 3] - kept[i] for i in range(0, 8, 4)} == {3}  # whole blocks of head_dim


@pytest.mark.parametrize("kwargs,match", [
    ({"scope": "everywhere"}, "scope"),
    ({"scope": "global", "normalize": "zscore"}, "normalize"),
    ({"max_ratio": 1.0}, "max_ratio"),
    ({"overrides": {"fc1": 1.2}}, "overrides"),
    ({"importance": "nope"}, "unknown importance"),
])
def test_bad_selection_arguments_are_clear_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        sc.plan(skewed(), X, ratio=0.25, **kwargs)


def test_overrides_type_and_unmatched_pattern() -> None:
    with pytest.raises(InvalidTypeError):
        sc.plan(skewed(), X, overrides=[("fc1", 0.5)])  # type: ignore[arg-type]
    with pytest.warns(UserWarning, match="matches no module"):
        sc.plan(skewed(), X, overrides={"nothing.here": 0.5})


@pytest.mark.parametrize("name", ["taylor", "wanda"])
def test_data_criteria_name_the_missing_argument(name: str) -> None:
    with pytest.raises(InvalidArgumentError, match="calibration="):
        sc.plan(skewed(), X, importance=name)
    if name == "taylor":
        with pytest.raises(InvalidArgumentError, match="loss_fn="):
            sc.plan(skewed(), X, importance=name, calibration=[X])
        stats = collect(skewed(), [X], loss_fn=lambda out, b: out.sum(), grads=True, grad_stats=("sq",))
        with pytest.raises(InvalidArgumentError, match="gradient statistics"):
            sc.plan(skewed(), X, importance=name, calibration=stats)
        assert sc.plan(skewed(), X, importance="hessian", calibration=stats).settings["calibration"]["batches"] == 1
