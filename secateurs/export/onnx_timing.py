"""onnxruntime latency of several ONNX files, timed interleaved so background load hits them alike."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from secateurs.export.onnx import _require
from secateurs.export.onnx_static import _feeds
from secateurs.graph.capture import ExampleInputs


def ort_interleaved_ms(paths: Sequence[Path], example_inputs: ExampleInputs, *, repeats: int = 10, warmup: int = 2,
                       threads: int | None = None) -> list[float]:
    """Median ms per run of each file (CPU provider, ``threads`` intra-op threads), runs alternating between files."""
    ort = _require("onnxruntime", "ONNX latency")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    sessions: list[Any] = [ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"]) for p in paths]
    feeds = [_feeds(s, example_inputs) for s in sessions]
    times: list[list[float]] = [[] for _ in paths]
    for i in range(warmup + repeats):
        for k, (session, feed) in enumerate(zip(sessions, feeds, strict=True)):
            start = time.perf_counter()
            session.run(None, feed)
            if i >= warmup:
                times[k].append((time.perf_counter() - start) * 1000)
    return [statistics.median(t) for t in times]
