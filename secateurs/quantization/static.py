"""int8 static quantization (convolutions and Linear layers, activations included) on CPU, through PT2E.

``torch.export`` captures the model, a quantizer (``secateurs.quantization.pt2e``) annotates it, ``prepare_pt2e``
inserts observers, the calibration batches set the activation ranges, ``convert_pt2e`` makes the reference int8
graph (int8 weight constants, quantize/dequantize around them), and the x86 backend lowers it to oneDNN int8
kernels. This replaces FX graph mode (``prepare_fx``/``convert_fx``), deprecated by PyTorch. The quantized model
keeps its converted graph in ``qmodel.meta["secateurs_int8"]["converted"]``: that is what
``secateurs.io.int8_static`` saves, without pickle.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from secateurs.errors import InvalidArgumentError
from secateurs.graph.capture import ExampleInputs, eval_mode, normalize_inputs
from secateurs.graph.outputs import flat_tensors
from secateurs.quantization import pt2e
from secateurs.quantization.dynamic import fidelity

BACKENDS = pt2e.BACKENDS


def quantized_layers(converted: torch.fx.GraphModule) -> dict[str, int]:
    """Convolutions and Linear layers whose weight is an int8 constant in a converted graph."""
    counts: dict[str, int] = {}
    for node in converted.graph.nodes:
        name = str(node.target)
        if node.op == "call_function" and ("conv" in name or "linear" in name) and "aten." in name:
            w = node.args[1] if len(node.args) > 1 else None
            if isinstance(w, torch.fx.Node) and "dequantize" in str(w.target):
                kind = "conv" if "conv" in name else "linear"
                counts[kind] = counts.get(kind, 0) + 1
    return counts


def finish(converted: torch.fx.GraphModule, example_inputs: ExampleInputs, backend: str, flow: str) -> nn.Module:
    """The runnable int8 model of a converted graph: lowered for ``backend``, with the converted graph and how it
    was made kept in ``meta["secateurs_int8"]`` for saving."""
    qmodel = pt2e.allow_train_eval_(pt2e.lower(converted, example_inputs, backend))  # eval() works on it
    qmodel.meta["secateurs_int8"] = {"mode": "static", "backend": backend, "flow": flow, "converted": converted}
    return qmodel


def prepare_convert(model: nn.Module, example_inputs: ExampleInputs, calibration: Iterable[Any],
                    backend: str) -> torch.fx.GraphModule:
    """The converted (reference) int8 graph of a copy of ``model``: capture, prepare, run ``calibration``, convert.
    With no calibration batch the example input sets the ranges (used when the ranges are loaded afterwards)."""
    with eval_mode(model):
        prepared = pt2e.prepare(model, example_inputs, backend)
    batches = list(calibration) or [example_inputs]
    with torch.no_grad():
        for batch in batches:
            a, k = normalize_inputs(batch)
            prepared(*a, **k)
    return pt2e.convert(prepared)


def int8_stats(model: nn.Module, qmodel: nn.Module, example_inputs: ExampleInputs, *, latency: bool,
               reference: nn.Module | None = None) -> dict[str, Any]:
    """Fidelity of ``qmodel`` against the float ``model`` and, with ``latency``, interleaved median latencies of the
    int8 model, the float model and (when given) the unpruned ``reference``."""
    args, kwargs = normalize_inputs(example_inputs)
    with torch.no_grad(), eval_mode(model):
        ref = flat_tensors(model(*args, **kwargs))
        got = flat_tensors(qmodel(*args, **kwargs))
    stats: dict[str, Any] = fidelity(ref, got)
    if latency:
        from secateurs.reporting.latency import compare_latency

        with eval_mode(model):
            stats.update(compare_latency({"latency_ms": qmodel, "fp32_latency_ms": model,
                                          **({"unpruned_latency_ms": reference} if reference is not None else {})},
                                         example_inputs))
    return stats


def quantize_static_int8(
    model: nn.Module,
    example_inputs: ExampleInputs,
    calibration: Iterable[Any],
    *,
    backend: str = "x86",
    latency: bool = True,
    reference: nn.Module | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """A statically quantized copy of ``model`` and its fidelity (and latency) against the float model.

    ``calibration``: batches shaped like ``example_inputs`` that set the activation ranges (use real data:
    random inputs give ranges that do not match deployment). ``reference``: the unpruned model, timed with the
    others. The input model is not changed.
    """
    batches = list(calibration)
    if not batches:
        raise InvalidArgumentError("int8 static quantization needs at least one calibration batch")
    converted = prepare_convert(model, example_inputs, batches, backend)
    qmodel = finish(converted, example_inputs, backend, "ptq")
    stats = {"method": f"PT2E static ({backend}, torchao)", "dtype": "int8 activations (uint8 on x86), int8 weights",
             "calibration_batches": len(batches), "quantized": quantized_layers(converted),
             **int8_stats(model, qmodel, example_inputs, latency=latency, reference=reference)}
    return qmodel, stats
