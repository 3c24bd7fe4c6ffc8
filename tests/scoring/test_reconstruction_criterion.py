"""Known answers of the `reconstruction` criterion (least-squares output reconstruction error)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import secateurs as sc
from secateurs.calibration import collect
from secateurs.scoring import get_criterion
from secateurs.scoring.registry import ScoringContext


class LinearPair(nn.Module):
    """x -> Linear(d, h) -> Linear(h, o): one group of h channels, no nonlinearity (so linear relations hold)."""

    def __init__(self, d: int = 5, h: int = 6, o: int = 4):
        super().__init__()
        self.a = nn.Linear(d, h)
        self.b = nn.Linear(h, o)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x))


class ConvPair(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 6, 3, padding=1)
        self.b = nn.Conv2d(6, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x))


def scores(model: nn.Module, data: list[torch.Tensor]) -> np.ndarray:
    analysis = sc.analyze(model, data[0])
    crit = get_criterion("reconstruction")
    stats = collect(model, data, moments=crit.moment_paths(model, analysis.groups))  # type: ignore[attr-defined]
    ctx = ScoringContext(model, dict(model.state_dict(keep_vars=True)), stats=stats)
    (s,) = [np.asarray(crit.scores(g, ctx)) for g in analysis.groups]
    assert not ctx.notes
    return s


def data(shape: tuple[int, ...], n: int = 3) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(*shape, generator=g, dtype=torch.float64) for _ in range(n)]


def test_zero_contribution_scores_zero_even_when_active() -> None:
    torch.manual_seed(0)
    m = LinearPair().double()
    with torch.no_grad():
        m.b.weight[:, 2] = 0  # channel 2 is large and varied, but the consumer ignores it
        m.a.weight[2] *= 10
    s = scores(m, data((32, 5)))
    assert s[2] == 0 and (np.delete(s, 2) > 0).all()


def test_linear_combination_of_kept_channels_is_free() -> None:
    """Channel 4 = channel 0 - 2·channel 1, so each of 0, 1, 4 is a combination of the other two: any one of them
    is re-routed exactly by lstsq (ridge-level scores), although channel 4 has the largest weights."""
    torch.manual_seed(0)
    m = LinearPair(d=6).double()  # 6 inputs, 6 channels: only channel 4 is dependent
    with torch.no_grad():
        m.a.weight[4] = m.a.weight[0] - 2 * m.a.weight[1]
        m.a.bias[4] = m.a.bias[0] - 2 * m.a.bias[1]
        m.b.weight[:, 4] *= 5
    s = scores(m, data((40, 6)))
    assert set(np.argsort(s)[:3]) == {0, 1, 4}
    assert s[[0, 1, 4]].max() < 1e-2 * s[[2, 3, 5]].min()
    # the dependent channel is also what a magnitude criterion would keep
    l2 = sc.plan(m, data((40, 6))[0], ratio=1 / 6, importance="l2")
    assert 4 not in l2.groups[0].removed


def test_conv_scores_match_brute_force_refit_over_unfolded_patches() -> None:
    torch.manual_seed(0)
    m = ConvPair().double()
    batches = data((2, 3, 6, 6))
    s = scores(m, batches)
    with torch.no_grad():
        feats = torch.cat([nn.functional.unfold(m.a(b), 3, padding=1).transpose(1, 2).reshape(-1, 54) for b in batches])
    w = m.b.weight.detach().reshape(4, -1)
    y = (feats @ w.T).numpy()
    x_all = feats.numpy()
    for u in (0, 3):
        keep = [f for f in range(54) if f // 9 != u]
        x = np.column_stack([x_all[:, keep], np.ones(len(x_all))])
        residual = y - x @ np.linalg.lstsq(x, y, rcond=None)[0]
        assert s[u] == pytest.approx(float((residual**2).sum(1).mean()), rel=1e-3)


def test_plan_with_reconstruction_and_lstsq_compensation_recovers_dependent_channels() -> None:
    torch.manual_seed(0)
    m = LinearPair(d=3, h=6).double()  # rank 3: three channels are combinations of the others
    batches = data((40, 3))
    r = sc.prune(m, batches[0], ratio=0.5, importance="reconstruction", calibration=batches, compensate="lstsq")
    assert r.compensation is not None and r.compensation.error_before > 1e-2
    assert r.compensation.error_after < 1e-2 * r.compensation.error_before  # ridge 1e-3 is the rest
