"""Latency measurement shared by ``prune`` (report) and ``bench``: several batch sizes, median of repeats."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from secateurs.errors import InvalidArgumentError

if TYPE_CHECKING:
    from torch import nn


def add_latency_flags(p: argparse.ArgumentParser, default_batches: str = "1,8") -> None:
    p.add_argument("--batch-sizes", default=default_batches, metavar="B1,B2",
                   help=f"batch sizes for the latency measurement (default {default_batches})")
    p.add_argument("--repeats", type=int, default=10, help="timed forward passes per measurement; the median is reported")


def batch_sizes(args: argparse.Namespace) -> list[int]:
    try:
        raw = args.batch_sizes  # "1,8" from the command line, [1, 8] or "1,8" from --config
        items = raw if isinstance(raw, (list, tuple)) else str(raw).split(",")
        sizes = [int(s) for s in items if str(s).strip()]
    except (TypeError, ValueError):
        sizes = []
    if not sizes or any(s < 1 for s in sizes):
        raise InvalidArgumentError(f"--batch-sizes must be positive integers like 1,8, got {args.batch_sizes!r}")
    if args.repeats < 1:
        raise InvalidArgumentError(f"--repeats must be at least 1, got {args.repeats}")
    return sizes


def fit_static_batch(sizes: list[int], model: nn.Module, name: str) -> tuple[list[int], str | None]:
    """Programs (.pt2) with fixed shapes run at their exported batch only: (sizes to measure, note or None)."""
    from secateurs.io.program import static_batch

    fixed = static_batch(model)
    if fixed is None or not sizes or set(sizes) == {fixed}:
        return sizes, None
    return [fixed], (f"{name} has fixed shapes (a program exported at batch {fixed}, not dynamic): latency is measured "
                     f"at batch {fixed} only, not at {','.join(map(str, sizes))}")


def measure(model: nn.Module, spec: Any, sizes: list[int], repeats: int, quiet: bool = False) -> dict[int, Any]:
    from tqdm import tqdm

    from secateurs.reporting.latency import measure_latency

    out = {}
    for b in tqdm(sizes, desc="latency", unit="batch size", disable=True if quiet or len(sizes) < 2 else None, leave=False):
        out[b] = measure_latency(model, spec.make(batch=b), repeats=repeats)
    return out
