"""Compensation recovers the output exactly where the theory says it must."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

import secateurs as sc
from secateurs.compensation import gather


@dataclass
class Lowest:
    """A criterion that removes the given units of every group (and nothing is scored by data)."""

    units: tuple[int, ...]
    name: str = "lowest"
    needs_data: bool = False

    def scores(self, group, ctx) -> np.ndarray:
        s = np.ones(group.n_units)
        s[list(self.units)] = 0
        return s


class MLP(nn.Module):
    def __init__(self, d: int = 5, h: int = 8, o: int = 4, relu: bool = True):
        super().__init__()
        self.a, self.b, self.relu = nn.Linear(d, h), nn.Linear(h, o), relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)
        return self.b(torch.relu(y) if self.relu else y)


class ConvPair(nn.Module):
    def __init__(self, padding: int = 1, bias: bool = True):
        super().__init__()
        self.a = nn.Conv2d(3, 6, 3, padding=padding)
        self.b = nn.Conv2d(6, 4, 3, padding=padding, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x))


def batches(shape: tuple[int, ...], n: int = 4) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(*shape, generator=g, dtype=torch.float64) for _ in range(n)]


def prune(model: nn.Module, data: list[torch.Tensor], units: tuple[int, ...], method: str, ridge: float = 1e-3,
          ratio: float = 0.5):
    """plan -> gather -> apply -> compensate; returns (error before, error after) on every batch."""
    with torch.no_grad():
        ref = [model(b) for b in data]
    plan = sc.plan(model, data[0], ratio=ratio, importance=Lowest(units))  # the criterion decides which
    assert plan.groups[0].removed == list(units)
    stats = gather(model, plan, data, method=method)
    sc.apply(model, plan)

    def error() -> float:
        with torch.no_grad():
            return max(float((model(b) - r).norm() / r.norm()) for b, r in zip(data, ref, strict=True))

    before = error()
    sc.compensate(model, plan, stats, method=method, ridge=ridge)
    return before, error()


def test_bias_is_exact_when_removed_channels_are_constant() -> None:
    torch.manual_seed(0)
    m = MLP().double()
    with torch.no_grad():
        for u, value in ((1, 0.7), (4, 1.3), (6, -2.0), (7, 0.2)):  # 6 is constant 0 after ReLU
            m.a.weight[u] = 0
            m.a.bias[u] = value
    before, after = prune(m, batches((16, 5)), (1, 4, 6, 7), "bias")
    assert before > 0.05 and after < 1e-12


def test_bias_is_exact_for_unpadded_conv_and_creates_the_missing_bias() -> None:
    torch.manual_seed(0)
    m = ConvPair(padding=0, bias=False).double()
    with torch.no_grad():
        for u in (0, 2, 3):
            m.a.weight[u] = 0
            m.a.bias[u] = 0.5 + u
    before, after = prune(m, batches((2, 3, 7, 7)), (0, 2, 3), "bias")
    assert before > 0.05 and after < 1e-12
    assert m.b.bias is not None and m.b.bias.shape == (4,)


def test_padded_conv_bias_uses_patch_means_and_reduces_error() -> None:
    torch.manual_seed(0)
    m = ConvPair(padding=1).double()
    with torch.no_grad():
        for u in (0, 2, 3):
            m.a.weight[u] = 0
            m.a.bias[u] = 0.5 + u
    before, after = prune(m, batches((2, 3, 16, 16)), (0, 2, 3), "bias")
    assert after < 0.5 * before  # not exact: zero padding makes the border patches differ from the mean


def test_lstsq_is_exact_when_removed_channels_are_combinations_of_kept_ones() -> None:
    torch.manual_seed(0)
    m = MLP(d=3, h=6, relu=False).double()  # 6 channels spanned by 3 inputs (+ bias)
    before, after = prune(m, batches((32, 3)), (0, 2, 5), "lstsq", ridge=1e-12)
    assert before > 0.05 and after < 1e-8


def test_lstsq_is_exact_for_conv_over_unfolded_patches() -> None:
    torch.manual_seed(0)
    m = ConvPair(padding=1).double()
    with torch.no_grad():  # channel 5 = 0.5·ch0 − ch2 and channel 1 = ch3 + ch4, at every position incl. padding
        m.a.weight[5], m.a.bias[5] = 0.5 * m.a.weight[0] - m.a.weight[2], 0.5 * m.a.bias[0] - m.a.bias[2]
        m.a.weight[1], m.a.bias[1] = m.a.weight[3] + m.a.weight[4], m.a.bias[3] + m.a.bias[4]
    before, after = prune(m, batches((2, 3, 6, 6)), (1, 5), "lstsq", ridge=1e-12, ratio=2 / 6)
    assert before > 0.05 and after < 1e-8


def test_lstsq_without_a_bias_fits_uncentred() -> None:
    torch.manual_seed(0)
    m = MLP(d=3, h=6, relu=False).double()
    m.b = nn.Linear(6, 4, bias=False).double()
    with torch.no_grad():
        m.a.bias.zero_()  # channels are exact linear combinations without intercept
    data = batches((32, 3))
    with torch.no_grad():
        ref = m(data[0])
    plan = sc.plan(m, data[0], ratio=0.5, importance=Lowest((1, 3, 4)))
    stats = gather(m, plan, data, method="lstsq")
    sc.apply(m, plan)
    result = sc.compensate(m, plan, stats, ridge=1e-12, add_bias=False)
    with torch.no_grad():
        assert float((m(data[0]) - ref).norm() / ref.norm()) < 1e-8
    assert m.b.bias is None and not result.added_biases
    assert plan.settings["compensation"]["method"] == "lstsq"
