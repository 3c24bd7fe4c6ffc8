"""torch.export programs: what works as on the eager model, and what is refused with the way out."""

import pytest
import torch

import secateurs as sc
from secateurs.errors import InvalidArgumentError
from secateurs.io.program import load_program
from secateurs.testing.programs import PROGRAM_TOYS, export_toy


@pytest.fixture
def pair(tmp_path):
    toy = PROGRAM_TOYS["aten.view"]
    torch.manual_seed(0)
    eager = toy.build().eval()
    x = toy.example()
    program = load_program(export_toy(eager, x, tmp_path / "heads.pt2")).module
    return eager, program, x, [toy.example(seed=i) for i in range(1, 4)]


@pytest.mark.parametrize("importance", ["l1", "l2", "fpgm", "lamp", "taylor", "hessian", "activation", "apoz", "wanda",
                                        "fluctuation"])
def test_weight_gradient_and_activation_criteria_rank_as_on_the_eager_model(pair, importance):
    eager, program, x, batches = pair
    kwargs = {"calibration": batches, "loss_fn": lambda out, batch: out.pow(2).mean()} if importance in (
        "taylor", "hessian") else {"calibration": batches} if importance in ("activation", "apoz", "wanda",
                                                                            "fluctuation") else {}
    on_program = sc.plan(program, x, ratio={"heads": 0.5}, importance=importance, **kwargs)
    on_eager = sc.plan(eager, x, ratio={"heads": 0.5}, importance=importance, **kwargs)
    assert [g.removed for g in on_program.groups] == [g.removed for g in on_eager.groups]
    assert any(g.removed for g in on_program.groups)
    assert on_program.settings["notes"] == on_eager.settings["notes"] == []  # read for real, no fallback


def test_activation_statistics_of_a_program_equal_the_eager_ones(pair):
    from secateurs.calibration.collect import collect

    eager, program, _, batches = pair
    on_program, on_eager = collect(program, batches), collect(eager, batches)
    assert sorted(on_program.outputs) == sorted(on_eager.outputs) and on_eager.outputs
    for path, stats in on_eager.outputs.items():
        torch.testing.assert_close(on_program.outputs[path].sum, stats.sum)
    assert "_secateurs_tap" not in dict(program.named_modules())  # the taps are gone again
    assert "secateurs_tap" not in program.code


def test_moments_criteria_and_sequential_calibration_are_refused(pair):
    from secateurs.calibration.data import CalibrationData

    _, program, x, batches = pair
    with pytest.raises(InvalidArgumentError, match="input features of nn.Linear/Conv modules"):
        sc.plan(program, x, ratio={"heads": 0.5}, importance="reconstruction", calibration=batches)
    with pytest.raises(InvalidArgumentError, match="sequential calibration"):
        sc.plan(program, x, ratio={"heads": 0.5}, importance="wanda", calibration=CalibrationData(batches, sequential=True))


def test_compensation_layer_dropping_and_2to4_are_refused_and_nothing_changes(pair):
    _, program, x, batches = pair
    before = {k: v.clone() for k, v in program.state_dict().items()}
    with pytest.raises(InvalidArgumentError, match="compensate="):
        sc.prune(program, x, ratio={"heads": 0.5}, compensate="lstsq", calibration=batches)
    with pytest.raises(InvalidArgumentError, match="drop_layers="):
        sc.plan(program, x, drop_layers=1, calibration=batches)
    with pytest.raises(InvalidArgumentError, match="2:4 sparsity"):
        sc.sparsify_2to4(program)
    assert all(torch.equal(before[k], v) for k, v in program.state_dict().items())
