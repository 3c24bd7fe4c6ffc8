"""onnxruntime latency of several ONNX files, timed interleaved so background load hits them alike."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from secateurs.export.onnx import require_package
from secateurs.export.onnx_static import ort_feeds
from secateurs.graph.capture import ExampleInputs
from secateurs.timing import medians, time_ms


def ort_interleaved_ms(paths: Sequence[Path], example_inputs: ExampleInputs, *, repeats: int = 10, warmup: int = 2,
                       threads: int | None = None) -> list[float]:
    """Median ms per run of each file (CPU provider, ``threads`` intra-op threads), runs alternating between files."""
    ort = require_package("onnxruntime", "ONNX latency")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    sessions: list[Any] = [ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"]) for p in paths]
    feeds = [ort_feeds(s, example_inputs) for s in sessions]
    def runner(session: Any, feed: dict[str, Any]) -> Callable[[], float]:
        return lambda: time_ms(lambda: session.run(None, feed))

    return medians([runner(s, f) for s, f in zip(sessions, feeds, strict=True)], repeats=repeats, warmup=warmup)
