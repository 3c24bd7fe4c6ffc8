"""ONNX export with an onnxruntime parity check against the PyTorch model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from secateurs.errors import InvalidArgumentError, SecateursError, missing_dependency
from secateurs.graph.capture import ExampleInputs, normalize_inputs
from secateurs.graph.outputs import flat_tensors

EXPORTERS = ("auto", "dynamo", "legacy")


class ExportError(SecateursError):
    """The model could not be exported, or the export does not reproduce the PyTorch outputs."""


def require_package(module: str, feature: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise missing_dependency(module, "export", feature) from None


def _input_names(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[str]:
    return [f"input_{i}" for i in range(len(args))] + list(kwargs)


def _export(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], path: Path, exporter: str,
            opset: int | None) -> None:
    from secateurs.io.program import static_batch

    names = _input_names(args, kwargs)
    dynamic = static_batch(model) is None  # a program exported at a fixed batch keeps it
    if exporter == "dynamo":
        require_package("onnxscript", "ONNX export with the dynamo exporter")
        batch = torch.export.Dim("batch", min=1, max=4096)
        shapes = tuple({0: batch} if isinstance(a, torch.Tensor) else None for a in args) if args else None
        kw_shapes = {k: {0: batch} if isinstance(v, torch.Tensor) else None for k, v in kwargs.items()} if kwargs else None
        program = torch.onnx.export(model, args, kwargs=kwargs or None, dynamo=True, opset_version=opset,
                                    dynamic_shapes=(shapes if args else kw_shapes) if dynamic else None, verbose=False)
        if program is None:
            raise ExportError("torch.onnx.export(dynamo=True) returned no program")
        program.save(str(path))
    else:
        torch.onnx.export(model, args, str(path), kwargs=kwargs or None, dynamo=False, opset_version=opset or 17,
                          input_names=names, dynamic_axes={n: {0: "batch"} for n in names} if dynamic else None)


def _ort_run(path: Path, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[np.ndarray]:
    ort = require_package("onnxruntime", "checking the ONNX export")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    values = [a for a in args if isinstance(a, torch.Tensor)] + [v for v in kwargs.values() if isinstance(v, torch.Tensor)]
    feeds = {i.name: v.detach().cpu().numpy() for i, v in zip(session.get_inputs(), values, strict=False)}
    return list(session.run(None, feeds))


def parity(path: Path, model: nn.Module, example_inputs: ExampleInputs) -> tuple[float, float]:
    """(largest abs difference between onnxruntime and PyTorch outputs compared in order, largest abs PyTorch output)."""
    args, kwargs = normalize_inputs(example_inputs)
    with torch.inference_mode():
        ref = [t.float().cpu().numpy() for t in flat_tensors(model(*args, **kwargs))]
    got = _ort_run(path, args, kwargs)
    if not ref or not got:
        raise ExportError(f"cannot compare outputs of {path}: PyTorch gave {len(ref)}, onnxruntime {len(got)}")
    diffs = []
    for r, g in zip(ref, got, strict=False):
        if r.shape != g.shape:
            raise ExportError(f"ONNX output shape {list(g.shape)} differs from PyTorch {list(r.shape)} in {path}")
        diffs.append(float(np.abs(r - g).max()) if r.size else 0.0)
    return max(diffs), max((float(np.abs(r).max()) for r in ref if r.size), default=1.0)


def export_onnx(
    model: nn.Module,
    example_inputs: ExampleInputs,
    path: str | os.PathLike[str],
    *,
    exporter: str = "auto",
    opset: int | None = None,
    atol: float = 1e-4,
    check: bool = True,
) -> dict[str, Any]:
    """Export ``model`` to ``path`` (batch dimension dynamic, except for programs of fixed shapes) and check it
    with onnxruntime.

    ``exporter="auto"`` tries ``torch.onnx.export(dynamo=True)`` and falls back to the legacy
    TorchScript exporter. Returns what happened: exporter used, max abs diff, whether parity holds.
    """
    if exporter not in EXPORTERS:
        raise InvalidArgumentError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    require_package("onnx", "ONNX export")
    path = Path(path)
    args, kwargs = normalize_inputs(example_inputs)
    model = model.eval()
    tried: list[str] = []
    used = None
    for kind in (["dynamo", "legacy"] if exporter == "auto" else [exporter]):
        try:
            _export(model, args, kwargs, path, kind, opset)
            used = kind
            break
        except SecateursError:
            raise
        except Exception as exc:
            tried.append(f"{kind}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    if used is None:
        raise ExportError("ONNX export failed (" + "; ".join(tried) + ")")
    info: dict[str, Any] = {"file": path.name, "exporter": used, "opset": _opset(path), "bytes": path.stat().st_size,
                            "fallback_reasons": tried}
    if check:
        diff, ref_scale = parity(path, model, example_inputs)
        info.update(max_abs_diff=diff, atol=atol, parity_ok=diff <= atol * max(1.0, ref_scale))
    return info


def _opset(path: Path) -> int | None:
    onnx = require_package("onnx", "ONNX export")
    m = onnx.load(str(path), load_external_data=False)
    return next((int(o.version) for o in m.opset_import if o.domain in ("", "ai.onnx")), None)


def onnx_int8(src: str | os.PathLike[str], dst: str | os.PathLike[str], model: nn.Module,
              example_inputs: ExampleInputs) -> dict[str, Any]:
    """Dynamic int8 quantization of an exported ONNX file (weights int8) with onnxruntime; fidelity vs PyTorch fp32."""
    require_package("onnxruntime", "int8 ONNX quantization")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    diff, _ = parity(Path(dst), model, example_inputs)
    return {"file": Path(dst).name, "bytes": Path(dst).stat().st_size, "max_abs_diff": diff}
