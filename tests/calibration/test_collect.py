"""Calibration statistics: streaming sums match direct computation; the model is left untouched."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from secateurs.calibration import CalibrationData, collect
from secateurs.calibration.hooks import all_reduce_
from secateurs.errors import InvalidArgumentError, InvalidTypeError
from secateurs.graph.groups import Member
from secateurs.scoring._common import member_stats
from secateurs.scoring.registry import ScoringContext
from secateurs.testing.toys import MLP


def data(n: int = 3) -> list[torch.Tensor]:
    return [torch.randn(5, 4, 6) for _ in range(n)]


def test_streaming_stats_match_direct_computation() -> None:
    model, xs = MLP().eval(), data()
    stats = collect(model, xs)
    x = torch.cat(xs).reshape(-1, 6).double()
    with torch.no_grad():
        h = torch.cat([model.fc1(b) for b in xs]).reshape(-1, 8).double()
    s = stats.inputs["fc1"]
    torch.testing.assert_close(s.mean, x.mean(0))
    torch.testing.assert_close(s.var, x.var(0, unbiased=False))
    torch.testing.assert_close(s.norm, x.norm(dim=0))
    torch.testing.assert_close(stats.outputs["fc1"].mean_abs, h.abs().mean(0))
    relu_in = stats.inputs["fc2"]
    torch.testing.assert_close(relu_in.zero_fraction, (F.relu(h) == 0).double().mean(0))
    assert stats.n_batches == 3 and float(s.count) == x.shape[0]


def test_members_map_to_input_or_output_channels() -> None:
    model = MLP().eval()
    stats = collect(model, data(1))
    ctx = ScoringContext(model, dict(model.state_dict(keep_vars=True)), stats=stats)
    side, s = member_stats(ctx, Member("fc2.weight", 1, 0))  # a consumer's input dim
    assert side == "in" and s is stats.inputs["fc2"]
    side, s = member_stats(ctx, Member("fc1.weight", 0, 0))  # a producer's output dim
    assert side == "out" and s is stats.outputs["fc1"]
    assert member_stats(ctx, Member("fc1.bias", 0, 0))[0] == "out"


def test_grouped_conv_input_stats_fold_onto_weight_dim() -> None:
    model = nn.Sequential(nn.Conv2d(4, 4, 1, groups=2)).eval()
    stats = collect(model, [torch.randn(2, 4, 3, 3)])
    ctx = ScoringContext(model, dict(model.state_dict(keep_vars=True)), stats=stats)
    side, s = member_stats(ctx, Member("0.weight", 1, 0))
    full = stats.inputs["0"]
    assert side == "in" and len(s.sum) == 2
    torch.testing.assert_close(s.sum, full.sum[:2] + full.sum[2:])


@pytest.mark.parametrize("form", ["tensor", "tuple", "dict"])
def test_batches_shaped_like_example_inputs(form: str) -> None:
    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
            return self.fc(a if b is None else a + b)

    x = torch.randn(2, 3)
    batch = {"tensor": x, "tuple": (x, x), "dict": {"a": x, "b": x}}[form]
    stats = collect(Two().eval(), [batch, batch])
    expected = x if form == "tensor" else 2 * x
    torch.testing.assert_close(stats.inputs["fc"].mean, expected.double().mean(0))


def test_gradients_leave_model_untouched_and_read_labels() -> None:
    model = MLP().train()
    model.fc1.weight.requires_grad_(False)
    model.fc2.bias.grad = torch.ones(3)
    pairs = [(torch.randn(4, 6), torch.randint(0, 3, (4,))) for _ in range(2)]
    calib = CalibrationData(pairs, inputs=lambda b: b[0], progress=False)
    stats = collect(model, calib, loss_fn=lambda out, b: F.cross_entropy(out, b[1]), grads=True)
    assert stats.grads["fc1.weight"].abs().sum() > 0  # gradients were taken even for a frozen weight
    assert not model.fc1.weight.requires_grad and model.fc2.weight.requires_grad
    assert torch.equal(model.fc2.bias.grad, torch.ones(3)) and model.fc1.bias.grad is None
    assert model.training and all(not m._forward_hooks for m in model.modules())
    g = torch.autograd.grad(F.cross_entropy(model.eval()(pairs[0][0]), pairs[0][1]), model.fc2.bias)[0]
    g = g + torch.autograd.grad(F.cross_entropy(model(pairs[1][0]), pairs[1][1]), model.fc2.bias)[0]
    torch.testing.assert_close(stats.grads["fc2.bias"], g)
    only_sq = collect(model, calib, loss_fn=lambda out, b: F.cross_entropy(out, b[1]), grads=True, grad_stats=("sq",))
    assert not only_sq.grads and only_sq.has("sq") and not only_sq.has("sum")


def test_max_batches_and_errors() -> None:
    model = MLP().eval()
    assert collect(model, CalibrationData(data(5), max_batches=2)).n_batches == 2
    with pytest.raises(InvalidTypeError, match=r"\[batch\]"):
        collect(model, torch.randn(2, 6))
    with pytest.raises(InvalidArgumentError, match="no batches"):
        collect(model, [])
    with pytest.raises(InvalidArgumentError, match="loss_fn"):
        collect(model, data(1), grads=True)
    with pytest.raises(InvalidArgumentError, match=r"inputs=lambda b: b\[0\]"):
        collect(model, [(torch.randn(2, 6), torch.tensor([0, 1]))])
    with pytest.raises(InvalidArgumentError, match="scalar"):
        collect(model, data(1), grads=True, loss_fn=lambda out, b: out)


def test_all_reduce_sums_across_a_process_group(tmp_path) -> None:
    import torch.distributed as dist

    model = MLP().eval()
    stats = collect(model, data(2))
    before = stats.inputs["fc1"].sum.clone()
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        stats2 = collect(model, data(2))  # collect reduces itself; with one rank the sums are unchanged
        all_reduce_(stats)
    finally:
        dist.destroy_process_group()
    torch.testing.assert_close(stats.inputs["fc1"].sum, before)
    assert stats.n_batches == 2 and stats2.n_batches == 2


def test_hf_conv1d_layout_is_known_by_name() -> None:
    pytorch_utils = pytest.importorskip("transformers.pytorch_utils")
    layer = pytorch_utils.Conv1D(5, 3)  # nf=5 outputs, nx=3 inputs; weight (3, 5)
    model = nn.Sequential(layer).eval()
    stats = collect(model, [torch.randn(2, 3)])
    ctx = ScoringContext(model, dict(model.state_dict(keep_vars=True)), stats=stats)
    assert member_stats(ctx, Member("0.weight", 0, 0))[0] == "in"
    assert member_stats(ctx, Member("0.weight", 1, 0))[0] == "out"
    assert len(stats.outputs["0"].sum) == 5
