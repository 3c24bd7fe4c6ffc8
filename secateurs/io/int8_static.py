"""The statically quantized (PT2E) int8 model as safetensors, and its rebuild without pickle.

A converted PT2E graph holds its int8 weights, per-channel scales and zero points as tensor attributes
(``get_attr`` nodes) and its per-tensor activation scales and zero points as numbers in the arguments of its
``quantize_per_tensor``/``dequantize_per_tensor`` nodes. Saving writes every attribute tensor as it is (int8
weights stay int8) and the numbers of every quantized-op node as JSON in the file's metadata (floats as exact
hex), with the first output on the example input. Loading captures and converts the pruned float model again
(the example input sets throwaway ranges), checks that the graph has the same quantized nodes and attributes,
writes the saved tensors and numbers into it, compares its output with the saved one, then lowers it for the
backend. A graph built differently (another torch or torchao) is an error, not a silent change.

Nodes are named in the file by what they are, not by their fx name: ``op:target#k``, the k-th node with that op
and target in graph order (:func:`node_keys`). fx names depend on a graph's history: ``convert_int8`` converts a
deep copy of the QAT-trained graph, and a copy starts a fresh fx namespace, so the convolutions that batch norm
folding recreates are named ``conv2d``, ``conv2d_30``, ... there and ``conv2d_30``, ``conv2d_31``, ... in the graph
rebuilt on load. Files written before these keys (fx names) still load, matched by name.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import nn

from secateurs.errors import FileFormatError, InvalidArgumentError

CHECK = "::check_output"  # the first output of the converted graph on the example input
TOLERANCE = 1e-4  # relative, against the largest output magnitude
_DTYPES = {str(d): d for d in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.float32, torch.float16,
                               torch.bfloat16, torch.float64, torch.int64)}


def _attr(gm: nn.Module, target: str) -> Any:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _quant_nodes(gm: torch.fx.GraphModule) -> list[torch.fx.Node]:
    return [n for n in gm.graph.nodes if n.op == "call_function" and "quantized_decomposed" in str(n.target)]


def _target_name(target: Any) -> str:
    """A node target as text that is the same in every process: ATen ops by name (``aten.conv2d.default``), other
    callables by module and qualified name (``str`` of a builtin such as ``torch.relu`` holds its address)."""
    if isinstance(target, str):
        return target
    if isinstance(target, (torch._ops.OpOverload, torch._ops.OpOverloadPacket)):
        return str(target)
    name = getattr(target, "__qualname__", None) or getattr(target, "__name__", None)
    return f"{getattr(target, '__module__', None) or ''}.{name}" if name else type(target).__name__


def node_keys(gm: torch.fx.GraphModule) -> dict[torch.fx.Node, str]:
    """Each node's name in the file: ``op:target#k``, the k-th node of that op and target in graph order (a
    placeholder's target is its input name, a ``get_attr``'s the attribute path), independent of fx names."""
    seen: dict[str, int] = {}
    keys = {}
    for node in gm.graph.nodes:
        base = f"{node.op}:{_target_name(node.target)}"
        keys[node] = f"{base}#{seen.get(base, 0)}"
        seen[base] = seen.get(base, 0) + 1
    return keys


def _arg(value: Any, keys: dict[torch.fx.Node, str]) -> Any:
    """One node argument as JSON: a node by key, a float as exact hex, an int, a dtype by name."""
    if isinstance(value, torch.fx.Node):
        return {"node": keys[value]}
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        return {"float": value.hex()}
    if isinstance(value, int):
        return value
    if isinstance(value, torch.dtype):
        return {"dtype": str(value)}
    raise InvalidArgumentError(f"cannot store the quantized-op argument {value!r} without pickle")


def _unarg(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, dict) and len(value) == 1:
        (kind, v), = value.items()
        if kind == "float" and isinstance(v, str):
            try:
                return float.fromhex(v)
            except (ValueError, OverflowError):
                pass
        if kind == "dtype" and v in _DTYPES:
            return _DTYPES[v]
        if kind == "node" and isinstance(v, str):
            return value
    raise FileFormatError(f"{where}: argument {str(value)[:80]!r} is not a number, a dtype or a node name")


def converted_of(qmodel: nn.Module) -> tuple[torch.fx.GraphModule, dict[str, Any]]:
    info = dict((getattr(qmodel, "meta", None) or {}).get("secateurs_int8") or {})
    converted = info.pop("converted", None)
    if not isinstance(converted, torch.fx.GraphModule):
        raise InvalidArgumentError("not a statically quantized secateurs model (make it with "
                                   "secateurs.quantization.static.quantize_static_int8 or sc.convert_int8)")
    return converted, info


def encode(qmodel: nn.Module, example_inputs: Any) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) for safetensors: every attribute tensor of the converted graph, the arguments of its
    quantized-op nodes, how it was made (backend, ptq/qat) and its output on ``example_inputs``."""
    from secateurs.graph.capture import normalize_inputs
    from secateurs.graph.outputs import flat_tensors

    converted, info = converted_of(qmodel)
    tensors: dict[str, torch.Tensor] = {}
    for node in converted.graph.nodes:
        if node.op == "get_attr":
            value = _attr(converted, str(node.target))
            if isinstance(value, torch.Tensor):
                tensors[str(node.target)] = value.detach().cpu().contiguous().clone()
    keys = node_keys(converted)
    nodes = [[keys[n], str(n.target), [_arg(a, keys) for a in n.args]] for n in _quant_nodes(converted)]
    args, kwargs = normalize_inputs(example_inputs)
    with torch.no_grad():
        tensors[CHECK] = flat_tensors(converted(*args, **kwargs))[0].detach().float().contiguous()
    return tensors, {"nodes": json.dumps(nodes), "backend": str(info.get("backend", "x86")),
                     "flow": str(info.get("flow", "ptq"))}


def _same_node(node: torch.fx.Node, saved: Any, keys: dict[torch.fx.Node, str]) -> bool:
    """``saved`` (a key, or an fx name in files written before keys) names ``node``."""
    return saved == keys[node] or saved == node.name


def _write_nodes(gm: torch.fx.GraphModule, saved: Any, source: Any) -> None:
    """Put the saved numbers into the rebuilt graph's quantized-op nodes; ops, keys and node arguments must match."""
    current, keys = _quant_nodes(gm), node_keys(gm)
    if not isinstance(saved, list) or len(saved) != len(current):
        raise FileFormatError(f"{source}: the file has {len(saved) if isinstance(saved, list) else '?'} quantized ops, "
                              f"the rebuilt graph {len(current)}; it was saved with another torch/torchao version")
    for node, entry in zip(current, saved, strict=True):
        if not (isinstance(entry, list) and len(entry) == 3 and _same_node(node, entry[0], keys)
                and entry[1] == str(node.target) and isinstance(entry[2], list) and len(entry[2]) == len(node.args)):
            raise FileFormatError(f"{source}: quantized op {node.name} ({node.target}) does not match the file's "
                                  f"{str(entry)[:120]}; it was saved with another torch/torchao version")
        new = []
        for old, value in zip(node.args, entry[2], strict=True):
            v = _unarg(value, f"{source}: {node.name}")
            if isinstance(old, torch.fx.Node) != isinstance(v, dict) or (
                    isinstance(old, torch.fx.Node) and not _same_node(old, v["node"], keys)):
                raise FileFormatError(f"{source}: quantized op {node.name} reads other values than the saved one")
            new.append(old if isinstance(old, torch.fx.Node) else v)
        node.args = tuple(new)
    gm.recompile()


def _write_tensors(gm: torch.fx.GraphModule, tensors: dict[str, torch.Tensor], source: Any) -> None:
    targets = {str(n.target) for n in gm.graph.nodes if n.op == "get_attr"
               and isinstance(_attr(gm, str(n.target)), torch.Tensor)}
    saved = set(tensors) - {CHECK}
    if targets != saved:
        raise FileFormatError(f"{source}: tensors {sorted(saved ^ targets)[:5]} are in only one of the file and the "
                              "rebuilt graph; it was saved with another torch/torchao version or another model")
    with torch.no_grad():
        for target in targets:
            t, new = _attr(gm, target), tensors[target]
            if t.shape != new.shape or t.dtype != new.dtype:
                raise FileFormatError(f"{source}: {target!r} is {new.dtype} {list(new.shape)} in the file, the rebuilt "
                                      f"graph has {t.dtype} {list(t.shape)}")
            t.copy_(new)


def rebuild(float_model: nn.Module, tensors: dict[str, torch.Tensor], metadata: dict[str, str], example_inputs: Any,
            backend: str, source: Any) -> nn.Module:
    """The statically quantized model: PT2E capture/convert of ``float_model`` (the pruned architecture), then the
    saved tensors and numbers; its output on ``example_inputs`` must match the one recorded at save time."""
    from secateurs.graph.capture import normalize_inputs
    from secateurs.graph.outputs import flat_tensors
    from secateurs.quantization.static import finish, prepare_convert

    try:
        nodes = json.loads(metadata.get("nodes", "null"))
    except (ValueError, RecursionError) as exc:
        raise FileFormatError(f"{source}: unreadable metadata ({str(exc)[:100]})") from None
    if CHECK not in tensors:
        raise FileFormatError(f"{source}: the saved output is missing")
    flow = str(metadata.get("flow", "ptq"))
    converted = _qat_converted(float_model, example_inputs, backend) if flow == "qat" else \
        prepare_convert(float_model, example_inputs, [], backend)
    _write_nodes(converted, nodes, source)
    _write_tensors(converted, tensors, source)
    args, kwargs = normalize_inputs(example_inputs)
    with torch.no_grad():
        got = flat_tensors(converted(*args, **kwargs))[0].float()
    want = tensors[CHECK]
    err = float((got - want).abs().max()) / max(float(want.abs().max()), 1e-6) if got.shape == want.shape else float("inf")
    if not err <= TOLERANCE:
        raise FileFormatError(f"{source}: the rebuilt int8 model's output differs from the saved one (relative error "
                              f"{err:.3g}); it was saved with another torch/torchao version or quantized backend")
    return finish(converted, example_inputs, backend, flow)


def _qat_converted(float_model: nn.Module, example_inputs: Any, backend: str) -> torch.fx.GraphModule:
    """A QAT-trained model converts through another graph than a calibrated one: rebuild it the same way."""
    from secateurs.graph.capture import normalize_inputs
    from secateurs.quantization import pt2e
    from secateurs.quantization.qat import prepare_qat

    prepared = pt2e.eval_mode_(prepare_qat(float_model, example_inputs, backend))
    args, kwargs = normalize_inputs(example_inputs)
    with torch.no_grad():
        prepared(*args, **kwargs)
    return pt2e.convert(prepared)
