"""Wall-clock latency: warm-up, then the median of repeated forward passes, with the thread count recorded."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from secateurs.graph.capture import ExampleInputs, normalize_inputs


@dataclass
class LatencyStats:
    median_ms: float
    min_ms: float
    max_ms: float
    repeats: int
    warmup: int
    threads: int
    batch: int
    device: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _batch_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    for v in (*args, *kwargs.values()):
        if isinstance(v, torch.Tensor) and v.ndim:
            return int(v.shape[0])
    return 1


def measure_latency(model: nn.Module, example_inputs: ExampleInputs, *, repeats: int = 10, warmup: int = 2) -> LatencyStats:
    """Median of ``repeats`` timed forward passes under ``torch.inference_mode`` after ``warmup`` untimed ones."""
    args, kwargs = normalize_inputs(example_inputs)
    times: list[float] = []
    with torch.inference_mode():
        for _ in range(warmup):
            model(*args, **kwargs)
        for _ in range(max(1, repeats)):
            t = time.perf_counter()
            model(*args, **kwargs)
            times.append((time.perf_counter() - t) * 1e3)
    device = next((str(p.device) for p in model.parameters()), "cpu")
    return LatencyStats(statistics.median(times), min(times), max(times), len(times), warmup,
                        torch.get_num_threads(), _batch_of(args, kwargs), device)
