"""The static int8 serializer names graph nodes by what they are (op, target, occurrence), not by fx name.

fx names depend on a graph's history: the QAT-trained graph converted by ``convert_int8`` (a deep copy) and the one
rebuilt on load give the same convolutions other fx names (``conv2d`` vs ``conv2d_30``). These tests use a small hand-made quantize/dequantize
graph (fast); the full QAT save/load round trip is in tests/quantization/test_qat.py and tests/cli/test_cli_qat.py.
"""

import json

import pytest
import torch
from torch import nn

pytest.importorskip("torchao", reason="the quantized_decomposed ops come with torchao: pip install 'secateurs[edge]'")

from secateurs.errors import FileFormatError  # noqa: E402
from secateurs.io.int8_static import CHECK, _write_nodes, encode, node_keys  # noqa: E402
from secateurs.quantization.pt2e import require_torchao  # noqa: E402


class _QDQ(nn.Module):
    """relu -> quantize -> dequantize -> linear, like a converted PT2E graph (numbers in the node arguments)."""

    def __init__(self, scale: float = 0.05, zero: int = 3):
        super().__init__()
        self.fc = nn.Linear(4, 2)
        self.scale, self.zero = scale, zero

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ops = torch.ops.quantized_decomposed
        y = torch.relu(x)
        q = ops.quantize_per_tensor.default(y, self.scale, self.zero, 0, 255, torch.uint8)
        return self.fc(ops.dequantize_per_tensor.default(q, self.scale, self.zero, 0, 255, torch.uint8))


def _graph(scale: float = 0.05, zero: int = 3) -> torch.fx.GraphModule:
    require_torchao()  # registers the quantized_decomposed ops
    torch.manual_seed(0)
    return torch.fx.symbolic_trace(_QDQ(scale, zero))


def _saved(gm: torch.fx.GraphModule, x: torch.Tensor) -> tuple[list, dict]:
    gm.meta["secateurs_int8"] = {"converted": gm, "backend": "x86", "flow": "qat"}
    tensors, metadata = encode(gm, x)
    return json.loads(metadata["nodes"]), tensors


def _quant_args(gm: torch.fx.GraphModule) -> list[tuple]:
    return [n.args for n in gm.graph.nodes if "quantized_decomposed" in str(n.target)]


def test_keys_name_nodes_by_op_target_and_occurrence():
    keys = node_keys(_graph()).values()
    assert not any("0x" in k for k in keys)  # the same in every process: no object address (str(torch.relu) has one)
    assert sorted(keys) == sorted([
        "placeholder:x#0", "call_function:torch._VariableFunctionsClass.relu#0", "call_module:fc#0", "output:output#0",
        "call_function:quantized_decomposed.quantize_per_tensor.default#0",
        "call_function:quantized_decomposed.dequantize_per_tensor.default#0"])


def test_saved_numbers_load_into_a_graph_whose_nodes_have_other_fx_names():
    x = torch.randn(3, 4)
    nodes, tensors = _saved(_graph(scale=0.125, zero=7), x)
    assert nodes[0][0] == "call_function:quantized_decomposed.quantize_per_tensor.default#0"
    assert nodes[0][2][0] == {"node": "call_function:torch._VariableFunctionsClass.relu#0"}  # by key, not fx name
    assert nodes[0][2][1] == {"float": (0.125).hex()}
    rebuilt = _graph()  # throwaway ranges, as on load
    for node in list(rebuilt.graph.nodes):  # as a graph with another history names them
        if node.op == "call_function":
            node._rename(f"{node.name}_30")
    assert [n.name for n in rebuilt.graph.nodes if n.op == "call_function"] != \
        [n.name for n in _graph().graph.nodes if n.op == "call_function"]
    _write_nodes(rebuilt, nodes, "model.int8.safetensors")
    assert [a[1:3] for a in _quant_args(rebuilt)] == [(0.125, 7), (0.125, 7)]
    assert torch.equal(rebuilt(x), tensors[CHECK])  # the saved output, bit for bit


def test_files_written_with_fx_names_still_load():
    gm = _graph(scale=0.25, zero=1)
    nodes, _ = _saved(gm, torch.randn(2, 4))
    by_key = {v: k.name for k, v in node_keys(gm).items()}
    legacy = [[by_key[key], target, [{"node": by_key[a["node"]]} if isinstance(a, dict) and "node" in a else a
                                     for a in args]] for key, target, args in nodes]
    assert legacy[0][0] == "quantize_per_tensor_default" and legacy[0][2][0] == {"node": "relu"}
    rebuilt = _graph()
    _write_nodes(rebuilt, legacy, "old.safetensors")
    assert [a[1:3] for a in _quant_args(rebuilt)] == [(0.25, 1), (0.25, 1)]


def test_a_quantized_op_reading_another_node_is_refused():
    nodes, _ = _saved(_graph(), torch.randn(2, 4))
    nodes[0][2][0] = {"node": "placeholder:x#0"}  # the file says the input, the graph quantizes the relu
    with pytest.raises(FileFormatError, match="reads other values than the saved one"):
        _write_nodes(_graph(), nodes, "model.int8.safetensors")
    nodes, _ = _saved(_graph(), torch.randn(2, 4))
    nodes[1][0] = "call_function:quantized_decomposed.dequantize_per_tensor.default#1"  # no such occurrence
    with pytest.raises(FileFormatError, match="does not match the file"):
        _write_nodes(_graph(), nodes, "model.int8.safetensors")
