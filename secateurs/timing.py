"""The one timing loop of secateurs: warm-up, then rounds that time every candidate once, in shuffled order.

Every latency number (reports, latency targets, ONNX runtime, the demo) is measured here, so they all
synchronise CUDA the same way and share the same defence against a noisy shared machine: each round times
every candidate once, in a seeded shuffled order, so a slow moment or a periodic disturbance affects all of
them alike. Callers take medians of the samples.
"""

from __future__ import annotations

import contextlib
import random
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch


def time_ms(fn: Callable[[], Any], *, cuda: bool = False) -> float:
    """Milliseconds of one call of ``fn``; with ``cuda``, the device is synchronised before and after."""
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1e3


def interleaved(samples: Sequence[Callable[[], float]], *, repeats: int, warmup: int = 2,
                seed: int = 0) -> list[list[float]]:
    """``repeats`` samples of each candidate. A candidate is a callable that runs once and returns its own
    measurement (usually ``time_ms(...)``; tests inject deterministic ones). ``warmup`` untimed calls of each
    come first; then every round calls each candidate once, in an order shuffled with ``seed``."""
    for sample in samples:
        for _ in range(warmup):
            sample()
    out: list[list[float]] = [[] for _ in samples]
    order = list(range(len(samples)))
    rng = random.Random(seed)
    for _ in range(max(1, repeats)):
        rng.shuffle(order)
        for i in order:
            out[i].append(float(samples[i]()))
    return out


def medians(samples: Sequence[Callable[[], float]], *, repeats: int, warmup: int = 2) -> list[float]:
    """The median of ``interleaved`` samples of each candidate."""
    return [statistics.median(s) for s in interleaved(samples, repeats=repeats, warmup=warmup)]


def uses_cuda(*values: Any) -> bool:
    """True when any tensor among ``values`` (or inside lists, tuples and dicts of them) lives on a CUDA device."""
    for v in values:
        if isinstance(v, torch.Tensor) and v.is_cuda:
            return True
        if isinstance(v, dict) and uses_cuda(*v.values()):
            return True
        if isinstance(v, (list, tuple)) and uses_cuda(*v):
            return True
    return False


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[int]:
    """Run with ``n`` intra-op threads (unchanged when None), restoring the previous count afterwards."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
