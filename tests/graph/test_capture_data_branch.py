"""A forward() that branches on a tensor's value: captured with torch.export.draft_export along the branch the
example inputs take, said in a warning, and pruned and verified like any other model."""

import pytest
import torch
from torch import nn

import secateurs as sc


class _Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up, self.down, self.other = nn.Linear(8, 32), nn.Linear(32, 8), nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x > 100).any():  # a Python branch on the data: torch.export alone cannot trace it
            return self.other(x)
        return x + self.down(torch.relu(self.up(x)))


def test_a_value_branch_is_captured_along_the_example_and_pruned_exactly():
    torch.manual_seed(0)
    model = _Branchy().eval()
    x = torch.randn(4, 8)
    reference = model(x).detach()
    with pytest.warns(UserWarning, match="draft_export"):
        report = sc.prune(model, (x,), ratio={"ffn": 0.5})
    assert report.verification.ok and report.verification.mode == "exact"
    assert model.up.out_features == 16 and model.down.in_features == 16
    assert model(x).shape == reference.shape


class _CastsItsLayer(torch.nn.Module):
    """Switch Transformers' router: forward() casts a sub-module to the dtype it already has, every call."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Linear(8, 16), torch.nn.Linear(16, 8)

    def forward(self, x):
        self.fc1 = self.fc1.to(torch.float32)
        return self.fc2(torch.relu(self.fc1(x)))


def test_a_forward_that_casts_a_layer_to_its_own_dtype_is_captured_and_pruned():
    torch.manual_seed(0)
    model, x = _CastsItsLayer().eval(), torch.randn(3, 8)
    report = sc.prune(model, x, ratio=0.5)
    assert report.verification.ok and model.fc1.out_features == 8
    assert torch.nn.Module.to.__name__ == "to" and torch.nn.Module.to.__qualname__ == "Module.to"  # put back
