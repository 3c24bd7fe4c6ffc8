"""Literal sizes of exported programs: every finder has a toy, and each toy's pruned program is exact."""

import pytest
import torch

import secateurs as sc
from secateurs.graph.literals import FINDERS, Literal, finder_for
from secateurs.io.program import load_program, save_program
from secateurs.plans import Plan
from secateurs.testing.programs import PROGRAM_TOYS, export_toy


def test_every_literal_finder_has_a_program_toy():
    for op, finder in FINDERS.entries().items():
        covered = op in PROGRAM_TOYS or any(finder_for(t) is finder for t in PROGRAM_TOYS)
        assert covered, f"literal finder for {op} has no toy in secateurs.testing.programs.PROGRAM_TOYS"


def test_literal_value_uses_multiples_and_keeps_unbound_elements():
    sizes = {3: 8, 4: 2}
    view = Literal("v", "aten.view.default", "args.1", (None, (3, 1), (4, 1)))
    assert view.value(sizes.__getitem__, [-1, 12, 4]) == [-1, 8, 2]
    bound = Literal("s", "aten.slice.Tensor", "args.2", ((4, 3),), scalar=True)
    assert bound.value(sizes.__getitem__, 12) == 6
    split = Literal("p", "aten.split.Tensor", "args.1", ((3, 1), (4, 1)), retarget="aten.split_with_sizes.default")
    assert split.value(sizes.__getitem__, 5) == [8, 2]  # an int split size becomes one size per piece


@pytest.fixture
def program(tmp_path):
    def make(op):
        toy = PROGRAM_TOYS[op]
        torch.manual_seed(0)
        x = toy.example()
        path = export_toy(toy.build(), x, tmp_path / "toy.pt2", decompose=toy.decompose)
        return toy, x, path

    return make


@pytest.mark.parametrize("op", sorted(PROGRAM_TOYS))
def test_pruned_program_rewrites_the_literal_and_matches_the_masked_original(program, tmp_path, op):
    toy, x, path = program(op)
    module = load_program(path).module
    before = {k: v.clone() for k, v in module.state_dict().items()}
    report = sc.prune(module, x, ratio=toy.ratio)
    assert report.verification.ok
    if op != "aten.layer_norm":  # normalising over a pruned dim is checked structurally, everything else exactly
        assert report.verification.mode == "exact" and report.verification.rel_error < 1e-5
    rewritten = {entry["op"].rsplit(".", 1)[0] for entry in report.plan.literals.values()}
    assert op in rewritten
    assert sc.verify(before, module, report.plan, x).ok  # the unpruned program is rebuilt from the state dict
    # the plan replays on a fresh load of the same file, and the pruned program round-trips through .pt2
    fresh = load_program(path).module
    sc.apply(fresh, Plan.from_json(report.plan.to_json()))
    fresh.load_state_dict(module.state_dict())
    saved = load_program(save_program(module, x, tmp_path / "pruned.pt2")).module
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), module(x))
        torch.testing.assert_close(saved(x), module(x))


def test_a_dynamic_batch_stays_dynamic_through_pruning_and_re_export(tmp_path):
    """The plan is made on a static capture; the graph's symbolic batch (sym_size) must not become a literal."""
    from secateurs.io.program import static_batch

    toy = PROGRAM_TOYS["aten.view"]
    torch.manual_seed(0)
    eager, x = toy.build().eval(), toy.example()
    batch = torch.export.Dim("batch", min=1, max=64)
    torch.export.save(torch.export.export(eager, (x,), dynamic_shapes=({0: batch},), strict=False),
                      str(tmp_path / "dyn.pt2"))
    program, unpruned = load_program(tmp_path / "dyn.pt2").module, load_program(tmp_path / "dyn.pt2").module
    assert static_batch(program) is None
    report = sc.prune(program, x, ratio=toy.ratio)
    other = torch.randn(5, *x.shape[1:])
    result = sc.verify(unpruned, program, report.plan, other)  # a batch the plan never saw
    assert result.ok and result.mode == "exact", result.message
    with torch.no_grad():
        saved = load_program(save_program(program, x, tmp_path / "pruned.pt2")).module
        assert static_batch(saved) is None
        torch.testing.assert_close(saved(torch.randn(7, *x.shape[1:])).shape, torch.Size([7, *x.shape[1:]]))
