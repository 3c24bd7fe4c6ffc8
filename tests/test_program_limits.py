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


@pytest.mark.parametrize("importance", ["l1", "l2", "fpgm", "lamp", "taylor", "hessian"])
def test_weight_and_gradient_criteria_rank_as_on_the_eager_model(pair, importance):
    eager, program, x, batches = pair
    kwargs = {"calibration": batches, "loss_fn": lambda out, batch: out.pow(2).mean()} if importance in (
        "taylor", "hessian") else {}
    on_program = sc.plan(program, x, ratio={"heads": 0.5}, importance=importance, **kwargs)
    on_eager = sc.plan(eager, x, ratio={"heads": 0.5}, importance=importance, **kwargs)
    assert [g.removed for g in on_program.groups] == [g.removed for g in on_eager.groups]
    assert any(g.removed for g in on_program.groups)


@pytest.mark.parametrize("importance", ["activation", "wanda", "fluctuation", "reconstruction"])
def test_activation_criteria_are_refused_not_silently_wrong(pair, importance):
    _, program, x, batches = pair
    with pytest.raises(InvalidArgumentError, match="module hooks, which a torch.export program never runs"):
        sc.plan(program, x, ratio={"heads": 0.5}, importance=importance, calibration=batches)


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
