"""Registry of compensation methods, keyed by name (``bias``, ``lstsq``)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from secateurs.calibration.moments import Moments
from secateurs.compensation.consumers import Consumer
from secateurs.errors import InvalidArgumentError


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


_METHODS: dict[str, Callable[[], Method]] = {}
_MODULES = ("secateurs.compensation.bias", "secateurs.compensation.lstsq")


def register_method(name: str) -> Callable[[Callable[[], Method]], Callable[[], Method]]:
    def deco(factory: Callable[[], Method]) -> Callable[[], Method]:
        if name in _METHODS:
            raise RuntimeError(f"compensation method {name!r} registered twice")
        _METHODS[name] = factory
        return factory

    return deco


def _load() -> None:
    for mod in _MODULES:
        importlib.import_module(mod)


def registered_methods() -> list[str]:
    _load()
    return sorted(_METHODS)


def get_method(name: object) -> Method:
    _load()
    if not isinstance(name, str) or name not in _METHODS:
        raise InvalidArgumentError(f"compensate must be one of {', '.join(repr(k) for k in sorted(_METHODS))} "
                                   f"or None, got {name!r}")
    return _METHODS[name]()
