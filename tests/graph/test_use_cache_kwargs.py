"""use_cache=False reaches models that take it through **kwargs (GraniteMoE-style), as it does named ones."""

from __future__ import annotations

import types

import torch
from torch import nn

import secateurs as sc
from secateurs.graph.capture import model_inputs


class KwargsModel(nn.Module):
    """A model with a ``config.use_cache`` flag whose forward refuses to run with the cache on."""

    def __init__(self):
        super().__init__()
        self.config = types.SimpleNamespace(use_cache=True)
        self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 4)

    def forward(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        if kwargs.get("use_cache", self.config.use_cache):
            raise RuntimeError("a cache object cannot be exported")
        return self.fc2(torch.relu(self.fc1(x)))


def test_use_cache_is_passed_through_kwargs():
    model = KwargsModel().eval()
    _, kwargs = model_inputs(model, {"x": torch.randn(2, 4)})
    assert kwargs["use_cache"] is False
    report = sc.prune(model, {"x": torch.randn(2, 4)}, ratio=0.5)
    assert report.verification.ok and model.fc1.out_features == 4


def test_an_explicit_use_cache_is_kept():
    _, kwargs = model_inputs(KwargsModel(), {"x": torch.randn(2, 4), "use_cache": True})
    assert kwargs["use_cache"] is True
