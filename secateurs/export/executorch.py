"""ExecuTorch export (``.pte`` for the XNNPACK backend), fp32 or int8, checked by running it with executorch's runtime.

fp32: ``torch.export`` of the pruned model, lowered with the XNNPACK partitioner. int8: PT2E with executorch's
``XNNPACKQuantizer`` (symmetric per-channel int8 weights, int8 activations) calibrated on the given batches, then
the same lowering. The written file is loaded back by ``executorch.runtime`` and its output compared with
PyTorch's (fp32: the float model; int8: the quantized reference graph, and the float model for information).
Needs ``pip install 'secateurs[edge]'`` (executorch >= 1.5.1, which works with torch 2.14.1).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from secateurs.errors import InvalidArgumentError, MissingDependencyError
from secateurs.graph.capture import ExampleInputs, eval_mode, normalize_inputs
from secateurs.graph.outputs import flat_tensors

PARITY_FP32 = 1e-4  # relative to the largest output magnitude
PARITY_INT8 = 2e-2  # int8 kernels round differently from the reference quantize/dequantize graph


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _require() -> Any:
    try:
        with _quiet():
            from executorch import exir
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    except ImportError as exc:
        raise MissingDependencyError(f"executorch export needs executorch: pip install 'secateurs[edge]' ({exc})") from None
    return exir, XnnpackPartitioner


def _positional(example_inputs: ExampleInputs) -> tuple[Any, ...]:
    args, kwargs = normalize_inputs(example_inputs)
    if kwargs or not all(isinstance(a, torch.Tensor) for a in args):
        raise InvalidArgumentError("executorch export takes positional tensor inputs; this model takes "
                                   f"{sorted(kwargs) or [type(a).__name__ for a in args]}")
    return args


def program_bytes(model: nn.Module, example_inputs: ExampleInputs) -> bytes:
    """The ``.pte`` bytes of ``model`` (an nn.Module or a converted int8 graph) lowered to XNNPACK."""
    exir, partitioner = _require()
    args = _positional(example_inputs)
    with _quiet(), torch.no_grad():
        ep = torch.export.export(model, args, strict=False)
        return bytes(exir.to_edge_transform_and_lower(ep, partitioner=[partitioner()]).to_executorch().buffer)


def run_pte(path: str | os.PathLike[str], example_inputs: ExampleInputs) -> list[torch.Tensor]:
    """The outputs of ``path`` on ``example_inputs``, run by executorch's runtime."""
    _require()
    with _quiet():
        from executorch.runtime import Runtime

        method = Runtime.get().load_program(Path(path)).load_method("forward")
    return [t for t in method.execute(list(_positional(example_inputs))) if isinstance(t, torch.Tensor)]


def _diff(ref: list[torch.Tensor], got: list[torch.Tensor]) -> tuple[float, float]:
    if len(ref) != len(got) or any(r.shape != g.shape for r, g in zip(ref, got, strict=False)):
        return float("inf"), 1.0
    scale = max((float(r.float().abs().max()) for r in ref if r.numel()), default=1.0)
    diff = max((float((r.float() - g.float()).abs().max()) for r, g in zip(ref, got, strict=True) if r.numel()),
               default=0.0)
    return diff, max(scale, 1e-6)


def export_executorch(model: nn.Module, example_inputs: ExampleInputs, path: str | os.PathLike[str], *,
                      int8: bool = False, calibration: Iterable[Any] | None = None, repeats: int = 10) -> dict[str, Any]:
    """Write ``model`` as an XNNPACK ``.pte`` to ``path`` (int8: calibrated on ``calibration``), run it with the
    executorch runtime and compare; returns the file's size, differences, parity and runtime latency (median ms)."""
    from secateurs.timing import medians, time_ms

    args = _positional(example_inputs)
    with eval_mode(model), torch.no_grad():
        float_out = flat_tensors(model(*args))
        target: nn.Module = model
        if int8:
            batches = list(calibration or [])
            if not batches:
                raise InvalidArgumentError("int8 executorch export needs calibration batches (activation ranges)")
            from secateurs.quantization.static import prepare_convert

            target = prepare_convert(model, example_inputs, batches, "xnnpack")
        ref = flat_tensors(target(*args))
        Path(path).write_bytes(program_bytes(target, example_inputs))
    got = run_pte(path, example_inputs)
    diff, scale = _diff(ref, got)
    info: dict[str, Any] = {"file": Path(path).name, "bytes": Path(path).stat().st_size, "backend": "xnnpack",
                            "dtype": "int8" if int8 else "fp32", "max_abs_diff": diff, "ref_max_abs": scale,
                            "parity_ok": diff <= (PARITY_INT8 if int8 else PARITY_FP32) * scale}
    if int8:
        info["max_abs_diff_vs_fp32"] = _diff(float_out, got)[0]
    with _quiet():
        from executorch.runtime import Runtime

        method = Runtime.get().load_program(Path(path)).load_method("forward")
    inputs = list(args)
    info["runtime_latency_ms"] = medians([lambda: time_ms(lambda: method.execute(inputs))], repeats=repeats)[0]
    return info
