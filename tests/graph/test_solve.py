"""Solving the bindings: the attribute values a plan needs, and the groups no attribute rewrite can follow."""

import pytest
import torch

import secateurs as sc
from secateurs.graph.bindings import Bindings, Element
from secateurs.graph.probe import unbindable_groups
from secateurs.graph.provenance import Attr, Const, Dim, Op
from secateurs.graph.solve import Solver
from secateurs.graph.tracking import Call
from secateurs.testing.attention import TinyTransformer

HEADS, DIM, WIN = Attr("m", "num_heads"), Attr("m", "dim"), Attr("m", "window")
WIDTH = Dim("x", 0, 2)


def _bindings(*constraints, values=None, originals=None, calls=()):
    """One element per (expr, written) whose required size is space i (sizes given to the solver per space)."""
    elements = [Element(f"n{i}", "aten.view.default", "m", "args.1", 0, w, i, 1, e, None, None)
                for i, (e, w) in enumerate(constraints)]
    values = values or {HEADS: 4, DIM: 64, WIN: 7, Attr("m", "split", 0): 8, Attr("m", "split", 1): 24}
    originals = originals or {("m", "num_heads"): 4, ("m", "dim"): 64, ("m", "window"): 7, ("m", "split"): [8, 24]}
    return Bindings(elements, list(calls), values, originals, {WIDTH: 9})  # x.shape[2] is space 9


def _solve(b, sizes):
    return Solver(b).solve(lambda s: sizes[s])


@pytest.mark.parametrize("expr, written, after, attr, value", [
    (HEADS, 4, 3, "num_heads", 3),  # value = attribute
    (Op("mul", (HEADS, Const(16))), 64, 48, "num_heads", 3),  # attribute * k
    (Op("floordiv", (DIM, Const(4))), 16, 12, "dim", 48),  # attribute // k: the multiple of k
])
def test_one_constraint_is_inverted(expr, written, after, attr, value):
    solution = _solve(_bindings((expr, written)), {0: after})
    assert solution.problems == [] and solution.attributes == {"m": {attr: value}}
    assert solution.before["m"][attr] == {"num_heads": 4, "dim": 64}[attr]


def test_a_product_alone_changes_one_of_its_attributes():
    solution = _solve(_bindings((Op("mul", (HEADS, DIM)), 256)), {0: 192})
    (changed,) = solution.attributes["m"].items()
    assert changed in {("num_heads", 3), ("dim", 48)}


def test_tuple_elements_are_rewritten_in_place():
    b = _bindings((Attr("m", "split", 1), 24), (Attr("m", "split", 0), 8))
    solution = _solve(b, {0: 16, 1: 8})
    assert solution.attributes == {"m": {"split": [8, 16]}} and solution.before == {"m": {"split": [8, 24]}}


def test_constraints_sharing_an_attribute_are_solved_together():
    b = _bindings((HEADS, 4), (Op("mul", (HEADS, DIM)), 256))  # heads and heads * dim, heads pruned 4 -> 3
    assert _solve(b, {0: 3, 1: 192}).attributes == {"m": {"num_heads": 3}}
    conflict = _solve(b, {0: 3, 1: 256})  # heads -> 3 but heads * dim stays 256: dim would be 85.33
    assert conflict.attributes == {} and {p["kind"] for p in conflict.problems} == {"unsolved"}


def test_sizes_from_tensors_need_no_rewrite_unless_they_disagree():
    b = _bindings((WIDTH, 99), (Const(5), 5))
    assert _solve(b, {0: 99, 1: 5, 9: 99}).problems == []  # the tensor still has 99: fine
    assert _solve(b, {0: 64, 1: 5, 9: 64}).problems == []  # and shrinks with the size it gives
    problems = _solve(b, {0: 64, 1: 4, 9: 99}).problems
    assert [p["kind"] for p in problems] == ["shape", "constant"]
    assert problems[0]["before"] == 99 and problems[0]["after"] == 64 and problems[0]["expr"] == "x.shape[2]"


def test_an_attribute_also_used_elsewhere_is_not_rewritten():
    calls = [Call("div", ((4, HEADS),))]  # forward() divides by num_heads too: rewriting it changes the result
    solution = _solve(_bindings((HEADS, 4), calls=calls), {0: 3})
    assert solution.attributes == {} and solution.problems[0]["kind"] == "other use"
    assert "div(...) also takes m.num_heads = 4" in solution.problems[0]["detail"][0]


def test_handled_modules_are_the_handlers_business():
    b = _bindings((Const(5), 5))
    b.handled = {"m"}
    assert _solve(b, {0: 4}).problems == []


@pytest.mark.parametrize("kind, heads_left_out", [("sdpa", False), ("split", False), ("input_width", True),
                                                  ("averaged", True)])
def test_probe_leaves_out_the_heads_no_attribute_rewrite_follows(kind, heads_left_out):
    model = TinyTransformer(kind=kind).eval()
    analysis = sc.analyze(model, torch.randn(1, 3, 32))
    left_out = unbindable_groups(analysis.structure, analysis.groups, Solver(analysis.coupled.bindings))
    heads = [g.id for g in analysis.groups if g.kind == "heads"]
    assert heads and all((g in left_out) == heads_left_out for g in heads)
    assert not any(g.kind == "channels" and "mlp" in g.name and g.id in left_out for g in analysis.groups)
