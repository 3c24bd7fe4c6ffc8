"""Calibration data: the batches, how to read one, and running one batch through a model."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from secateurs.errors import InvalidArgumentError, InvalidTypeError
from secateurs.graph.capture import normalize_inputs
from secateurs.progress import bar

if TYPE_CHECKING:
    from secateurs.calibration.residency import Residency

LossFn = Callable[[Any, Any], torch.Tensor]


@dataclass
class CalibrationData:
    """Calibration batches plus how to read them.

    ``batches`` is any iterable (a DataLoader, a list). Each batch is shaped like ``example_inputs``
    (a tensor, a tuple of positional arguments or a dict of keyword arguments), or ``inputs(batch)``
    returns that, e.g. ``inputs=lambda b: b[0]`` for ``(image, label)`` batches. ``loss_fn(output, batch)``
    receives the raw batch, so it can read labels. ``progress=None`` shows a bar only on a terminal.

    ``sequential=True`` (decoder LMs and other stacks of blocks) holds only one block's activations at a
    time, as SparseGPT/Wanda do: the batches run up to the first block, then block by block on the cached
    hidden states (``secateurs.calibration.sequential``). ``blocks`` names the ``nn.ModuleList`` of blocks
    (e.g. ``"model.layers"``); by default the largest list of same-type modules. Activation statistics
    only (not for gradient criteria such as ``taylor``).
    """

    batches: Iterable[Any]
    inputs: Callable[[Any], Any] | None = None
    max_batches: int | None = None
    progress: bool | None = None
    sequential: bool = False
    blocks: str | None = None
    residency: Residency | None = None  # sequential only: which weights to load per step (out of core)


def as_calibration(calibration: Any) -> CalibrationData:
    if isinstance(calibration, CalibrationData):
        return calibration
    if isinstance(calibration, (torch.Tensor, dict)) or not isinstance(calibration, Iterable):
        raise InvalidTypeError(
            f"calibration must be an iterable of batches (a DataLoader or a list like [x1, x2]), a CalibrationData "
            f"or precomputed Statistics, got {type(calibration).__name__}; wrap a single batch as [batch]"
        )
    return CalibrationData(calibration)


def progress(items: Iterable[Any], enabled: bool | None, total: int | None, desc: str = "calibration") -> Iterable[Any]:
    return bar(items, desc, total, enabled)  # None: a bar on a terminal only; secateurs.progress turns all off


def forward_batch(model: nn.Module, data: CalibrationData, batch: Any, i: int) -> Any:
    args, kwargs = normalize_inputs(data.inputs(batch) if data.inputs else batch)
    try:
        return model(*args, **kwargs)
    except (TypeError, RuntimeError, ValueError) as exc:
        shapes = [tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__ for a in args]
        raise InvalidArgumentError(
            f"calibration batch {i} does not run through {type(model).__name__} (positional arguments {shapes}, "
            f"keywords {sorted(kwargs)}): {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}. "
            "Each batch is passed like example_inputs; for (inputs, labels) batches use "
            "CalibrationData(loader, inputs=lambda b: b[0])"
        ) from exc
