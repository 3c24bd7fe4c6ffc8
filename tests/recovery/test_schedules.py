"""Schedules (linear, geometric, cosine) and re-scoring of the current model at every iterative step."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import secateurs as sc
from secateurs.errors import InvalidArgumentError
from secateurs.recovery import cosine_schedule, geometric_schedule, linear_schedule


def mlp(width: int = 16) -> nn.Sequential:
    return nn.Sequential(nn.Linear(6, width), nn.ReLU(), nn.Linear(width, 3))


def test_cosine_schedule_is_a_half_cosine_ramp() -> None:
    s = cosine_schedule(0.8, 4)
    assert s == pytest.approx([0.8 * (1 - 0.5**0.5) / 2, 0.4, 0.8 * (1 + 0.5**0.5) / 2, 0.8])
    steps = [b - a for a, b in zip([0.0, *s], s, strict=False)]
    assert steps[0] < steps[1] and steps[3] < steps[2]  # small first and last steps
    assert cosine_schedule(0.5, 1) == pytest.approx([0.5])
    assert all(a < b for a, b in zip(s, s[1:], strict=False))


@pytest.mark.parametrize("schedule", [linear_schedule, geometric_schedule, cosine_schedule])
def test_every_schedule_ends_at_the_final_ratio_and_rejects_bad_arguments(schedule) -> None:
    assert schedule(0.6, 5)[-1] == pytest.approx(0.6)
    with pytest.raises(InvalidArgumentError, match="final_ratio"):
        schedule(1.0, 3)
    with pytest.raises(InvalidArgumentError, match="n_steps"):
        schedule(0.5, 0)


def test_each_step_rescores_the_model_left_by_the_callback() -> None:
    """The callback zeroes four surviving hidden units; the next step must remove exactly those."""
    torch.manual_seed(0)
    model, x = mlp(width=16), torch.randn(2, 6)
    chosen: list[torch.Tensor] = []

    def recover_fn(m, info):
        if info.index == 0:
            with torch.no_grad():
                m[0].weight[4:8] = 0
                m[0].bias[4:8] = 0
                m[2].weight[:, 4:8] = 0
        chosen.append(m[0].weight.detach().clone())

    result = sc.iterative_prune(model, x, [0.25, 0.5], recover_fn=recover_fn, progress=False)
    assert [len(p.groups[0].removed) for p in result.plans] == [4, 4]
    assert result.plans[1].groups[0].removed == [4, 5, 6, 7]
    assert model[0].out_features == 8 and bool(model[0].weight.abs().sum(1).gt(0).all())


def test_cosine_schedule_drives_iterative_pruning() -> None:
    torch.manual_seed(0)
    model, x = mlp(width=16), torch.randn(2, 6)
    calls: list[int] = []
    result = sc.iterative_prune(model, x, cosine_schedule(0.5, 3), recover_fn=lambda m, info: calls.append(info.index),
                                progress=False)
    assert calls == [0, 1, 2] and model[0].out_features == 8
    widths = [16 - sum(len(p.groups[0].removed) for p in result.plans[: k + 1]) for k in range(3)]
    assert widths[0] > widths[1] > widths[2] == 8
