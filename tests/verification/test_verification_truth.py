"""What "verified (exact)" compares: every output (integers exactly), per-output and per-column scale, two batch
sizes, refused empty inputs, and notes for what the runs cannot see (training mode, shape branches)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import secateurs as sc
from secateurs.errors import InvalidArgumentError, VerificationError
from secateurs.verification.inputs import check_example_inputs, resized_batch
from secateurs.verification.oracle import compare, reference_outputs


class WithCount(nn.Module):
    """Logits and the width of the hidden layer, as an integer tensor (e.g. a count of active units)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.fc1(x))
        return self.fc2(h), torch.full((x.shape[0],), h.shape[1])


def test_integer_output_that_changes_is_a_failure():
    model = WithCount().eval()
    with pytest.raises(VerificationError, match=r"integer/bool element\(s\) differ"):
        sc.prune(model, torch.randn(2, 8), ratio=0.5)
    assert model.fc1.out_features == 16  # restored


def test_integer_outputs_equal_are_reported():
    class Argmax(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 4)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            y = self.fc2(torch.relu(self.fc1(x)))
            return y, y.argmax(-1)

    report = sc.prune(Argmax().eval(), torch.randn(4, 8), ratio=0.5)
    assert report.verification.mode == "exact"
    assert "1 integer/bool output(s) identical" in report.verification.message


@pytest.mark.parametrize("inputs", [torch.randn(0, 8), (), {}])
def test_empty_example_inputs_are_refused(inputs):
    with pytest.raises(InvalidArgumentError, match="compare nothing"):
        check_example_inputs(inputs)


def test_prune_refuses_an_empty_batch():
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    with pytest.raises(InvalidArgumentError, match="empty tensor"):
        sc.prune(model, torch.randn(0, 8), ratio=0.5)
    assert model[0].out_features == 16


class BoxesAndProbs(nn.Module):
    """One output tensor holding pixel boxes (hundreds) beside class probabilities (below 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.box, self.cls = nn.Linear(8, 16), nn.Linear(16, 4), nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc1(x))
        return torch.cat([300 + 200 * torch.tanh(self.box(h)), self.cls(h).softmax(-1)], -1)


def test_error_is_scaled_per_column_not_by_the_largest_element():
    model = BoxesAndProbs().eval()
    x = torch.randn(8, 8)
    plan = sc.plan(model, x, ratio=0.5)
    reference = reference_outputs(model, plan, x)
    pruned = copy.deepcopy(model)
    sc.apply(pruned, plan)
    assert compare(reference, pruned, plan, x).ok
    with torch.no_grad():
        pruned.cls.bias[0] += 0.1  # probabilities off by about 0.02, boxes (hundreds) unchanged
    result = compare(reference, pruned, plan, x)
    assert not result.ok and "relative" in result.message
    assert result.max_abs_error is not None and 0.005 < result.max_abs_error < 0.05


def test_result_reports_max_abs_error_and_batch_sizes():
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    report = sc.prune(model, torch.randn(2, 8), ratio=0.5)
    v = report.verification
    assert v.ok and v.mode == "exact"
    assert v.max_abs_error is not None and "max abs error" in v.message
    assert v.batch_sizes == (2, 3)


class BranchOnBatch(nn.Module):
    """At batch sizes above 2 a branch reads a width stored as an attribute, which pruning does not update."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 4)
        self.width = 16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc1(x))
        if x.shape[0] > 2:
            h = h.reshape(-1, 2, self.width // 2).flatten(1)
        return self.fc2(h)


def test_second_batch_size_catches_a_branch_the_capture_did_not_see():
    model = BranchOnBatch().eval()
    with pytest.raises(VerificationError, match="at batch size 3"):
        sc.prune(model, torch.randn(2, 8), ratio=0.5)
    assert model.fc1.out_features == 16


class FixedBatch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x.view(2, 8))))


def test_a_model_bound_to_its_batch_size_gets_a_note():
    report = sc.prune(FixedBatch().eval(), torch.randn(2, 8), ratio=0.5)
    assert report.verification.ok and report.verification.batch_sizes == (2,)
    assert any("does not run at batch size 3" in n for n in report.notes)


class SingleSampleBranch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc1(x))
        if x.shape[0] == 1:
            h = torch.tanh(h)
        return self.fc2(h)


def test_shape_branch_is_noted():
    report = sc.prune(SingleSampleBranch().eval(), torch.randn(1, 8), ratio=0.5)
    assert report.verification.ok
    assert any("other operations at batch size 2" in n for n in report.notes), report.notes


def test_training_dependent_modules_are_noted():
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.Dropout(0.1), nn.Linear(16, 4)).eval()
    report = sc.prune(model, torch.randn(4, 8), ratio=0.5)
    note = next(n for n in report.notes if "self.training" in n)
    assert "BatchNorm1d" in note and "Dropout" in note


def test_no_notes_for_a_plain_model():
    report = sc.prune(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).eval(), torch.randn(2, 8), ratio=0.5)
    assert report.notes == []


def test_resized_batch_grows_every_batched_tensor():
    x = {"ids": torch.zeros(2, 5, dtype=torch.long), "mask": torch.ones(2, 5), "pos": torch.arange(5)[None]}
    grown, b = resized_batch(x)
    assert b == 3 and grown["ids"].shape == (3, 5) and grown["mask"].shape == (3, 5) and grown["pos"].shape == (1, 5)


def test_meta_device_prune_counts_pruned_macs():
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    report = sc.prune(model, torch.randn(2, 8, device="meta"), ratio=0.5, importance="random")
    real = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    sc.apply(real, report.plan)
    assert report.macs_after < report.macs_before
    assert report.macs_after == sc.count(real, torch.randn(2, 8))[0]
    assert report.verification.mode == "structural" and "meta device" in report.verification.message


class HeadsFromAttribute(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up, self.down = nn.Linear(8, 16), nn.Linear(16, 8)
        self.gate = nn.Parameter(torch.rand(4) + 0.5)
        self.groups = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.up(x)
        return self.down((h.view(x.shape[0], self.groups, -1) * self.gate[:, None]).flatten(1))


def _three_groups(module, hints):  # refreshes the attribute wrongly: the pruned model cannot run
    module.groups = 3


def test_a_pruned_model_that_does_not_run_names_the_module():
    from secateurs.surgery.registry import HANDLERS

    model = nn.Sequential(nn.Linear(8, 8), HeadsFromAttribute()).eval()
    with HANDLERS.replaced(HeadsFromAttribute, _three_groups), \
            pytest.raises(VerificationError, match=r"in module '1' \(HeadsFromAttribute\)"):
        sc.prune(model, torch.randn(2, 8), ratio={"channels": 0.5})
    assert model[1].groups == 4
