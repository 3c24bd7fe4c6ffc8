"""int8 static quantization (convolutions and Linear layers, activations included) on CPU.

Uses FX graph mode quantization (``torch.ao.quantization.quantize_fx``): ``prepare_fx`` inserts
observers, calibration batches set the activation ranges, ``convert_fx`` makes a quantized model for
the x86 (fbgemm/oneDNN) or qnnpack kernels. In torch 2.14 this API still works but is deprecated in
favour of torchao's PT2E flow; ``torch.ao.quantization.quantize_pt2e`` has already left torch itself, and
torchao is not a dependency. FX needs a model ``torch.fx.symbolic_trace`` can trace: data-dependent
Python control flow (most Hugging Face models) fails with a clear error.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from secateurs.errors import InvalidArgumentError
from secateurs.graph.capture import ExampleInputs, normalize_inputs
from secateurs.graph.outputs import flat_tensors
from secateurs.quantization.dynamic import fidelity

BACKENDS = ("x86", "fbgemm", "qnnpack")


def _quantized_layers(qmodel: nn.Module) -> dict[str, int]:
    counts: dict[str, int] = {}
    for m in qmodel.modules():
        mod = type(m).__module__
        if mod.startswith("torch.ao.nn.quantized") or mod.startswith("torch.ao.nn.intrinsic.quantized"):
            name = type(m).__name__
            if "Conv" in name or "Linear" in name:
                kind = "conv" if "Conv" in name else "linear"
                counts[kind] = counts.get(kind, 0) + 1
    return counts


def prepare_convert(model: nn.Module, example_inputs: ExampleInputs, calibration: Iterable[Any], backend: str) -> nn.Module:
    """FX graph mode static quantization of a copy of ``model`` for ``backend``: prepare, run ``calibration``
    (may be empty when the ranges are loaded afterwards, see ``secateurs.io.int8_static``), convert."""
    if backend not in BACKENDS:
        raise InvalidArgumentError(f"unknown quantization backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if backend not in torch.backends.quantized.supported_engines:
        raise InvalidArgumentError(f"this torch build has no {backend!r} quantized engine "
                                   f"(available: {', '.join(torch.backends.quantized.supported_engines)})")
    with warnings.catch_warnings():  # the deprecation notice of torch.ao.quantization, said once in the module doc
        warnings.simplefilter("ignore")
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

        args, kwargs = normalize_inputs(example_inputs)
        if kwargs:
            raise InvalidArgumentError("int8 static quantization (FX) takes positional tensor inputs; this model takes "
                                       f"keywords {sorted(kwargs)}: use int8 dynamic quantization instead")
        previous = torch.backends.quantized.engine
        torch.backends.quantized.engine = backend
        try:
            try:
                prepared = prepare_fx(copy.deepcopy(model).eval(), get_default_qconfig_mapping(backend), args)
            except Exception as exc:  # symbolic tracing raises many types (TraceError, TypeError, AttributeError)
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise InvalidArgumentError(
                    f"int8 static quantization needs a model torch.fx.symbolic_trace can trace; {type(model).__name__} "
                    f"failed: {type(exc).__name__}: {first}. Use int8 dynamic quantization (--int8 dynamic) instead") from None
            with torch.inference_mode():
                for batch in calibration:
                    a, k = normalize_inputs(batch)
                    prepared(*a, **k)
            qmodel = convert_fx(prepared)
        finally:
            torch.backends.quantized.engine = previous
    qmodel.meta["secateurs_int8"] = {"mode": "static", "backend": backend}
    return qmodel


def quantize_static_int8(
    model: nn.Module,
    example_inputs: ExampleInputs,
    calibration: Iterable[Any],
    *,
    backend: str = "x86",
    latency: bool = True,
) -> tuple[nn.Module, dict[str, Any]]:
    """A statically quantized copy of ``model`` and its fidelity (and latency) against the float model.

    ``calibration``: batches shaped like ``example_inputs`` that set the activation ranges (use real data:
    random inputs give ranges that do not match deployment). The input model is not changed.
    """
    batches = list(calibration)
    if not batches:
        raise InvalidArgumentError("int8 static quantization needs at least one calibration batch")
    qmodel = prepare_convert(model, example_inputs, batches, backend)
    args, _ = normalize_inputs(example_inputs)
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = backend
    try:
        with torch.inference_mode():
            ref = flat_tensors(model.eval()(*args))
            got = flat_tensors(qmodel(*args))
        stats: dict[str, Any] = {"method": f"torch.ao FX static ({backend})", "dtype": "quint8 activations, qint8 weights",
                                 "calibration_batches": len(batches), "quantized": _quantized_layers(qmodel),
                                 **fidelity(ref, got)}
        if latency:
            from secateurs.reporting.latency import measure_latency

            stats["latency_ms"] = measure_latency(qmodel, example_inputs).median_ms
            stats["fp32_latency_ms"] = measure_latency(model, example_inputs).median_ms
    finally:
        torch.backends.quantized.engine = previous
    return qmodel, stats
