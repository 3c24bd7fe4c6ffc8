"""Wall-clock latency: warm-up, then the median of repeated forward passes, with the thread count recorded."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from secateurs.graph.capture import ExampleInputs, normalize_inputs
from secateurs.timing import interleaved, time_ms, uses_cuda


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
    cuda = uses_cuda(args, kwargs)
    with torch.inference_mode():
        times = interleaved([lambda: time_ms(lambda: model(*args, **kwargs), cuda=cuda)], repeats=repeats,
                            warmup=warmup)[0]
    device = next((str(p.device) for p in model.parameters()), "cpu")
    return LatencyStats(statistics.median(times), min(times), max(times), len(times), warmup,
                        torch.get_num_threads(), _batch_of(args, kwargs), device)


def compare_latency(models: dict[str, nn.Module], example_inputs: ExampleInputs, *, repeats: int = 10,
                    warmup: int = 2) -> dict[str, float]:
    """Median milliseconds of each model (keyed as given), timed in interleaved shuffled rounds
    (``secateurs.timing``), so a slow moment of the machine affects them all alike."""
    args, kwargs = normalize_inputs(example_inputs)
    cuda = uses_cuda(args, kwargs)
    names = list(models)

    def sample(m: nn.Module) -> Any:
        return lambda: time_ms(lambda: m(*args, **kwargs), cuda=cuda)

    with torch.inference_mode():
        times = interleaved([sample(models[n]) for n in names], repeats=repeats, warmup=warmup)
    return {n: statistics.median(t) for n, t in zip(names, times, strict=True)}
