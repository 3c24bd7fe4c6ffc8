"""Tracked numbers keep the expression they were computed from through Python arithmetic, and stay numbers."""

import copy
import math

import pytest

from secateurs.graph.provenance import Attr, Const, Dim, Op, SizeFloat, SizeInt, evaluate, leaves, tracked

HEADS, WIDTH = Attr("attn", "num_heads"), Dim("layer_norm", 0, 2)


def test_arithmetic_keeps_the_expression():
    heads, width = tracked(4, HEADS), SizeInt(64, WIDTH)
    head_dim = width // heads
    assert head_dim == 16 and isinstance(head_dim, SizeInt)
    assert head_dim.expr == Op("floordiv", (WIDTH, HEADS))
    assert (heads * 16).expr == Op("mul", (HEADS, Const(16)))
    assert (768 // heads).expr == Op("floordiv", (Const(768), HEADS))  # reflected: the int on the left
    assert (-heads).expr == Op("neg", (HEADS,)) and str(heads + 1) == "5"


def test_floats_from_sizes_are_tracked():
    scale = tracked(16, Attr("attn", "head_dim")) ** -0.5
    assert isinstance(scale, SizeFloat) and scale == 0.25
    assert leaves(scale.expr) == {Attr("attn", "head_dim")}
    assert math.isclose(evaluate(scale.expr, lambda leaf: 4), 0.5)


def test_tuples_are_tracked_element_by_element_and_other_values_not_at_all():
    window = tracked((7, 5), Attr("blk", "window"))
    assert isinstance(window, tuple) and window == (7, 5)
    assert window[1].expr == Attr("blk", "window", 1)
    assert tracked(True, Attr("m", "flag")) is None
    assert tracked("relu", Attr("m", "act")) is None
    assert tracked((1, "a"), Attr("m", "mixed")) is None


def test_copies_are_plain_numbers_and_comparisons_are_int_comparisons():
    heads = tracked(4, HEADS)
    assert type(copy.deepcopy(heads)) is int and type(copy.copy(heads)) is int
    assert heads == 4 and hash(heads) == hash(4) and {4: "x"}[heads] == "x"
    assert max(heads, 2) is heads


def test_evaluate_substitutes_every_leaf():
    expr = (SizeInt(192, WIDTH) // tracked(3, HEADS)).expr
    values = {WIDTH: 96, HEADS: 2}
    assert evaluate(expr, values.__getitem__) == 48
    assert str(expr) == "(layer_norm.shape[2] // attn.num_heads)"


@pytest.mark.parametrize("op", ["__add__", "__sub__", "__mul__", "__floordiv__", "__mod__"])
def test_operators_with_non_numbers_defer(op):
    assert getattr(tracked(4, HEADS), op)("x") is NotImplemented
