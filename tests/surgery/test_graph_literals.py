"""Rewriting an exported program's literal sizes: refused plans leave the program unchanged, errors name the node."""

import copy

import pytest
import torch

import secateurs as sc
from secateurs.errors import ApplyError
from secateurs.graph.program import is_program_graph
from secateurs.io.program import load_program
from secateurs.testing.programs import PROGRAM_TOYS, export_toy
from secateurs.testing.toys import MLP


@pytest.fixture
def heads(tmp_path):
    toy = PROGRAM_TOYS["aten.view"]
    torch.manual_seed(0)
    x = toy.example()
    path = export_toy(toy.build(), x, tmp_path / "heads.pt2")
    return path, x, sc.plan(load_program(path).module, x, ratio=toy.ratio)


def snapshot(module):
    return module.code, {k: v.clone() for k, v in module.state_dict().items()}


def _assert_unchanged(module, snapshot, x, expected):
    code, state = snapshot
    assert module.code == code
    assert {k: tuple(v.shape) for k, v in module.state_dict().items()} == {k: tuple(v.shape) for k, v in state.items()}
    with torch.no_grad():
        torch.testing.assert_close(module(x), expected)


def test_program_graph_detection(heads):
    path, x, _ = heads
    assert is_program_graph(load_program(path).module)
    assert not is_program_graph(MLP())
    assert not is_program_graph(torch.fx.symbolic_trace(MLP()))  # Python-level graph: sizes are not literals


def test_plan_for_another_program_is_refused_and_nothing_changes(heads):
    path, x, plan = heads
    module = load_program(path).module
    expected, snap = module(x).detach(), snapshot(module)
    bad = copy.deepcopy(plan)
    name = next(iter(bad.literals))
    bad.literals["not_a_node"] = bad.literals.pop(name)
    with pytest.raises(ApplyError, match="not_a_node.*another program.*restored unchanged"):
        sc.apply(module, bad)
    _assert_unchanged(module, snap, x, expected)


def test_a_literal_that_no_longer_fits_names_its_node_and_nothing_changes(heads):
    path, x, plan = heads
    module = load_program(path).module
    expected, snap = module(x).detach(), snapshot(module)
    bad = copy.deepcopy(plan)
    name, entry = next((n, e) for n, e in bad.literals.items() if e["op"] == "aten.view.default")
    key = next(iter(entry["set"]))
    entry["set"][key] = [v + 1 if i == 2 else v for i, v in enumerate(entry["set"][key])]  # one head too many
    with pytest.raises(ApplyError, match=f"graph node '{name}' \\(aten.view.default\\) no longer fits"):
        sc.apply(module, bad)
    _assert_unchanged(module, snap, x, expected)


def test_eager_models_ignore_the_literals_of_their_plan(heads):
    toy = PROGRAM_TOYS["aten.split"]
    model = toy.build()
    x = toy.example()
    report = sc.prune(model, x, ratio=toy.ratio)
    assert report.plan.literals  # recorded from the capture, but the eager forward computes its own sizes
    assert report.verification.ok and model(x).shape == (3, 16)
