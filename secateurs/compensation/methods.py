"""Registry of compensation methods, keyed by name (``bias``, ``lstsq``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from secateurs.calibration.moments import Moments
from secateurs.compensation.consumers import Consumer
from secateurs.errors import InvalidArgumentError
from secateurs.registry import Registry


@dataclass
class Fit:
    """New parameters of one consumer in original output rows: weight over the kept columns (None: unchanged)
    and bias (None: unchanged), float64."""

    weight: torch.Tensor | None
    bias: torch.Tensor | None
    note: str | None = None


class Method(Protocol):
    """``fit`` refits one consumer from its input moments; ``with_bias`` says a bias exists or may be created."""

    name: str
    needs_gram: bool

    def fit(self, c: Consumer, m: Moments, *, ridge: float, with_bias: bool) -> Fit: ...


METHODS: Registry[Callable[[], Method]] = Registry(
    "compensation method", modules=("secateurs.compensation.bias", "secateurs.compensation.lstsq"))
register_method = METHODS.register


def get_method(name: object) -> Method:
    if not isinstance(name, str) or name not in METHODS:
        raise InvalidArgumentError(f"compensate must be one of {', '.join(repr(k) for k in METHODS.names())} "
                                   f"or None, got {name!r}")
    return METHODS.get(name)()
