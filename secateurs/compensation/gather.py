"""gather(): input statistics of a plan's consumer layers on the ORIGINAL model, before apply."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from secateurs.calibration.collect import collect
from secateurs.calibration.data import CalibrationData
from secateurs.calibration.stats import Statistics
from secateurs.compensation.config import Compensation, as_compensation
from secateurs.compensation.consumers import Consumer, find_consumers
from secateurs.compensation.methods import get_method
from secateurs.errors import InvalidArgumentError
from secateurs.plans import Plan


@dataclass
class ConsumerStatistics:
    """Consumers of a plan (referencing the original weights) with the moments of their inputs."""

    consumers: list[Consumer]
    stats: Statistics
    gram: bool  # Gram matrices were collected (needed by "lstsq")
    notes: list[str] = field(default_factory=list)


def check_request(spec: object, calibration: Any, *, read_twice: bool = False) -> Compensation:
    """Fail early on a bad method name or missing/unsuitable calibration data (``read_twice``: planning reads
    the batches first, so a one-shot iterator would leave compensation none)."""
    request = as_compensation(spec)
    method = request.method
    batches = calibration.batches if isinstance(calibration, CalibrationData) else calibration
    if read_twice and isinstance(batches, Iterator):
        raise InvalidArgumentError(
            f"compensate={method!r} reads the calibration batches again after the data criterion has: pass a list "
            "or a DataLoader, not a one-shot iterator or generator")
    if calibration is None:
        raise InvalidArgumentError(
            f"compensate={method!r} needs calibration data: pass calibration=<iterable of batches shaped like "
            "example_inputs> (a list such as [x1, x2] or a DataLoader; it is read again after planning, so not a "
            "one-shot generator)")
    if isinstance(calibration, Statistics):
        raise InvalidArgumentError(
            f"compensate={method!r} needs calibration batches, not precomputed Statistics: it records input "
            "moments of the pruned layers; pass the batches (a list or a DataLoader)")
    return request


def gather(model: nn.Module, plan: Plan, calibration: Any, *, method: str = "lstsq") -> ConsumerStatistics:
    """Run ``calibration`` batches through the unpruned ``model`` and record, for every layer whose input the
    plan shrinks, the mean and (for ``method="lstsq"``) the Gram matrix of its input features.

    Call before ``sc.apply(model, plan)``; the model is not changed. Memory: F²·8 bytes per layer for the Gram
    (F = in_features, or C_in·k·k for a convolution).
    """
    check_request(method, calibration)
    gram = get_method(method).needs_gram
    consumers, notes = find_consumers(model, plan)
    unfoldable = [c for c in consumers if c.fmap.rows is not None]
    for c in consumers:
        if c.fmap.rows is None:
            notes.append(f"{c.path}: input features cannot be unfolded (padding mode or asymmetric 'same' padding); "
                         "not compensated")
    paths = [c.path for c in unfoldable]
    stats = collect(model, calibration, moments=paths, gram=gram, channels=False) if paths else Statistics()
    kept = [c for c in unfoldable if c.path in stats.moments]
    notes.extend(f"{c.path}: never called on floating inputs during calibration; not compensated"
                 for c in unfoldable if c.path not in stats.moments)
    return ConsumerStatistics(kept, stats, gram, notes)


def gram_bytes(model: nn.Module, plan: Plan) -> int:
    """Memory the Gram matrices of a least-squares compensation of ``plan`` would take (float64, F x F per layer)."""
    consumers, _ = find_consumers(model, plan)
    total = 0
    for c in consumers:
        out_dim = 1 if c.fmap.in_dim == 0 else 0
        features = c.weight.numel() // max(int(c.weight.shape[out_dim]), 1)
        total += features * features * 8
    return total
