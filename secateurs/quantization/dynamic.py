"""int8 dynamic quantization of Linear layers after pruning, with output-fidelity numbers."""

from __future__ import annotations

import copy
import warnings
from typing import Any

import torch
from torch import nn

from secateurs.errors import InvalidArgumentError
from secateurs.graph.capture import ExampleInputs, normalize_inputs
from secateurs.graph.outputs import flat_tensors


def dynamic_linear() -> Any:
    from torch.ao.nn.quantized.dynamic import Linear

    return Linear


def quantize_dynamic_int8(model: nn.Module) -> nn.Module:
    """``torch.ao`` dynamic int8 quantization of every ``nn.Linear`` (a copy; the deprecation notice is silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(copy.deepcopy(model).eval(), {nn.Linear}, dtype=torch.qint8)


def fidelity(reference: list[torch.Tensor], other: list[torch.Tensor]) -> dict[str, float]:
    """Relative L2 error, max abs difference and top-1 agreement (argmax over the last dim) of the first output."""
    r, o = reference[0].detach().float(), other[0].detach().float()
    rel = float((o - r).norm() / r.norm().clamp_min(1e-12))
    agree = float((o.argmax(-1) == r.argmax(-1)).float().mean()) if r.ndim >= 1 and r.shape[-1] > 1 else 1.0
    return {"rel_error": rel, "max_abs_diff": float((o - r).abs().max()), "top1_agreement": agree}


def quantize_int8(model: nn.Module, example_inputs: ExampleInputs, *, latency: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """A dynamically quantized copy of ``model`` (int8 weights of every ``nn.Linear``) and its fidelity numbers.

    The input model is not changed. Latency (median ms) of both models is measured when ``latency`` is set.
    """
    linears = sum(isinstance(m, nn.Linear) for m in model.modules())
    if linears == 0:
        raise InvalidArgumentError(f"{type(model).__name__} has no nn.Linear layer: int8 dynamic quantization would change nothing")
    qmodel = quantize_dynamic_int8(model)
    args, kwargs = normalize_inputs(example_inputs)
    with torch.inference_mode():
        ref = flat_tensors(model.eval()(*args, **kwargs))
        got = flat_tensors(qmodel(*args, **kwargs))
    stats: dict[str, Any] = {"quantized_layers": linears, "dtype": "qint8", "method": "torch.ao dynamic (Linear)",
                             **fidelity(ref, got)}
    if latency:
        from secateurs.reporting.latency import measure_latency

        stats["latency_ms"] = measure_latency(qmodel, example_inputs).median_ms
        stats["fp32_latency_ms"] = measure_latency(model, example_inputs).median_ms
    return qmodel, stats
