"""The capture records how forward() computed each literal size: from which attributes and tensor sizes."""

import torch
from torch import nn

import secateurs as sc
from secateurs.graph.capture import capture
from secateurs.graph.provenance import Attr, Const, Dim, Op
from secateurs.testing.attention import TinyTransformer


def _bindings(model, x):
    return sc.analyze(model, x).coupled.bindings


def _elements(b, node):
    return {e.index: e for e in b.elements if e.node == node}


def test_reshape_sizes_are_bound_to_the_attributes_and_tensor_sizes_they_come_from():
    model = TinyTransformer(dim=32, num_heads=4).eval()
    b = _bindings(model, torch.randn(2, 5, 32))
    elements = _elements(b, "reshape")
    assert elements[3].expr == Attr("blocks.0.attn", "num_heads") and elements[3].written == 4
    assert elements[4].expr == Attr("blocks.0.attn", "head_dim") and elements[4].written == 8
    assert elements[0].expr == Dim("x", 0, 0)  # B from x.shape, the input placeholder under its final name
    assert Dim("x", 0, 0) in b.dim_space
    assert elements[2].expr == Const(3)  # the literal 3 written in forward()
    out = _elements(b, "reshape_1")
    assert out[2].expr == Op("mul", (Attr("blocks.0.attn", "num_heads"), Attr("blocks.0.attn", "head_dim")))
    assert b.values[Attr("blocks.0.attn", "num_heads")] == 4
    assert b.originals[("blocks.0.attn", "scale")] == 8**-0.5


def test_tuple_attributes_are_bound_element_by_element():
    model = TinyTransformer(dim=32, num_heads=4, kind="split").eval()
    b = _bindings(model, torch.randn(1, 3, 32))
    elements = _elements(b, "split_with_sizes")
    assert [elements[i].expr for i in range(3)] == [Attr("blocks.0.attn", "split_sizes", i) for i in range(3)]
    assert b.originals[("blocks.0.attn", "split_sizes")] == [4, 4, 8]


def test_capture_leaves_attributes_as_they_were():
    model = TinyTransformer().eval()
    attn = model.blocks[0].attn
    capture(model, torch.randn(1, 3, 32))
    assert type(attn.num_heads) is int and type(attn.scale) is float and type(attn.head_dim) is int


class _Picky(nn.Module):
    """A forward() that refuses int subclasses: the capture falls back to plain numbers, with no bindings."""

    def __init__(self):
        super().__init__()
        self.width, self.fc = 4, nn.Linear(8, 8)

    def forward(self, x):
        if type(self.width) is not int:
            raise TypeError("width must be an int")
        return self.fc(x).view(-1, self.width, 2)


def test_a_forward_that_rejects_tracked_numbers_is_captured_plainly():
    model = _Picky().eval()
    captured = capture(model, torch.randn(3, 8))
    assert captured.calls == {} and type(model.width) is int
    assert any(n.target.startswith("aten.view") for n in captured.nodes)


def test_a_call_that_made_several_nodes_is_one_call():
    model = TinyTransformer(dim=32, num_heads=4, kind="split").eval()
    captured = capture(model, torch.randn(1, 3, 32))
    split = captured.calls["split_with_sizes"]
    pieces = [n.name for n in captured.nodes if n.target == "getitem" and n.args[0].name == "split_with_sizes"]
    assert pieces and all(captured.calls[p] is split for p in pieces)
