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


class _Config:
    """A config object modules hold and read at forward time (transformers' ``PretrainedConfig`` is one)."""

    def __init__(self, heads: int = 4, head_dim: int = 8):
        self.num_heads, self.head_dim = heads, head_dim

    def to_dict(self):
        return dict(vars(self))


class _ConfigAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        width = config.num_heads * config.head_dim
        self.qkv, self.proj = nn.Linear(32, 3 * width), nn.Linear(width, 32)

    def forward(self, x):
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.config.num_heads, self.config.head_dim).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-1, -2) * 8**-0.5, dim=-1)
        return x + self.proj((att @ v).transpose(1, 2).reshape(b, t, -1))


class _SharedConfig(nn.Module):
    """Two attention layers reading their head count from one shared config object."""

    def __init__(self):
        super().__init__()
        self.config = _Config()
        self.layers = nn.ModuleList([_ConfigAttention(self.config) for _ in range(2)])

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def test_config_fields_read_at_forward_are_bound_and_rewritten_once_for_every_layer():
    torch.manual_seed(0)
    model, x = _SharedConfig().eval(), torch.randn(2, 5, 32)
    b = _bindings(model, x)
    assert {e.expr for e in b.elements if e.node == "view"} >= {Attr("", "config.num_heads"), Attr("", "config.head_dim")}
    report = sc.prune(model, x, ratio={"heads": 0.25})
    assert report.verification.ok and report.verification.mode == "exact"
    assert model.config.num_heads == 3 and model.layers[1].config is model.config
    assert model.layers[0].qkv.weight.shape == (72, 32) and model.layers[1].qkv.weight.shape == (72, 32)
    assert type(model.config.num_heads) is int  # the capture left the config's fields as they were
