"""Static int8 quantization of an exported ONNX file with onnxruntime (QDQ, calibrated activation ranges)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from secateurs.errors import InvalidArgumentError
from secateurs.export.onnx import parity, require_package
from secateurs.graph.capture import ExampleInputs, normalize_inputs
from secateurs.timing import medians, time_ms


def ort_feeds(session: Any, batch: Any) -> dict[str, np.ndarray]:
    args, kwargs = normalize_inputs(batch)
    values = [a for a in args if isinstance(a, torch.Tensor)] + [v for v in kwargs.values() if isinstance(v, torch.Tensor)]
    return {i.name: v.detach().cpu().numpy() for i, v in zip(session.get_inputs(), values, strict=False)}


def ort_latency_ms(path: Path, example_inputs: ExampleInputs, repeats: int = 10, threads: int | None = None) -> float:
    """Median onnxruntime latency (ms) of one run on ``example_inputs``, CPU provider, after 2 warm-up runs."""
    ort = require_package("onnxruntime", "ONNX latency")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feeds = ort_feeds(session, example_inputs)
    return medians([lambda: time_ms(lambda: session.run(None, feeds))], repeats=repeats, warmup=2)[0]


def onnx_int8_static(src: str | os.PathLike[str], dst: str | os.PathLike[str], model: nn.Module,
                     example_inputs: ExampleInputs, calibration: Iterable[Any]) -> dict[str, Any]:
    """Quantize ``src`` to ``dst`` (int8 weights and activations, QDQ format) using ``calibration`` batches.

    Returns the file, its size, the max abs difference to the fp32 PyTorch ``model`` and the median
    onnxruntime latency of both ONNX files on ``example_inputs``.
    """
    ort = require_package("onnxruntime", "int8 static ONNX quantization")
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    session = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    feeds = [ort_feeds(session, b) for b in calibration]
    if not feeds:
        raise InvalidArgumentError("int8 static ONNX quantization needs at least one calibration batch")

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    quantize_static(str(src), str(dst), _Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, per_channel=True)
    diff, scale = parity(Path(dst), model, example_inputs)
    return {"file": Path(dst).name, "bytes": Path(dst).stat().st_size, "max_abs_diff": diff, "ref_max_abs": scale,
            "calibration_batches": len(feeds), "latency_ms": ort_latency_ms(Path(dst), example_inputs),
            "fp32_latency_ms": ort_latency_ms(Path(src), example_inputs)}
