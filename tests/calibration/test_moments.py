"""Input-feature moments recorded by calibration: values, conv patches, shared inputs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from secateurs.calibration import collect
from secateurs.calibration.features import feature_map


class Shared(nn.Module):
    """q and k read the same tensor; o reads another; c is a conv."""

    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.o = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)
        self.c = nn.Conv2d(2, 3, 3, padding=1, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.q(x) + self.k(x)
        img = self.o(h).transpose(1, 2).reshape(x.shape[0], 2, 2, -1)
        return self.c(img).sum()


def test_moments_match_direct_computation_and_shared_inputs_share_one_gram() -> None:
    torch.manual_seed(0)
    model = Shared().double()
    batches = [torch.randn(3, 8, 4, dtype=torch.float64) for _ in range(2)]
    stats = collect(model, batches, moments=["q", "k", "o", "c"], channels=False)
    assert stats.moments["q"] is stats.moments["k"] and stats.moments["o"] is not stats.moments["q"]
    rows = torch.cat([b.reshape(-1, 4) for b in batches])
    torch.testing.assert_close(stats.moments["q"].gram, rows.T @ rows)
    assert float(stats.moments["q"].count) == 48  # counted once, not once per layer
    torch.testing.assert_close(stats.moments["q"].mean, rows.mean(0))
    with torch.no_grad():
        imgs = [model.o(model.q(b) + model.k(b)).transpose(1, 2).reshape(3, 2, 2, -1) for b in batches]
    patches = torch.cat([F.unfold(i, 3, padding=1, stride=2).transpose(1, 2).reshape(-1, 18) for i in imgs])
    torch.testing.assert_close(stats.moments["c"].gram, patches.T @ patches)
    fmap = feature_map(model.c)
    assert fmap is not None and fmap.size == 18
    assert fmap.features_of(torch.tensor([1])).tolist() == list(range(9, 18))
    # shared moments are all-reduced once
    assert len(stats.all_tensors()) == 3 * 3
