"""Compensation: the request ``sc.prune(compensate=...)`` takes; a method name is shorthand for one."""

from __future__ import annotations

import math
from dataclasses import dataclass

from secateurs.compensation.methods import get_method
from secateurs.errors import InvalidArgumentError, InvalidTypeError

DEFAULT_RIDGE = 1e-3


@dataclass(frozen=True)
class Compensation:
    """``method``: ``"lstsq"`` or ``"bias"`` (``METHODS.names()``); ``ridge``: least-squares damping as a
    fraction of the mean diagonal; ``add_bias=False`` never creates a bias on a layer without one."""

    method: str = "lstsq"
    ridge: float = DEFAULT_RIDGE
    add_bias: bool = True

    def __post_init__(self) -> None:
        get_method(self.method)
        r = self.ridge
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not (r >= 0 and math.isfinite(r)):
            raise InvalidArgumentError(f"ridge must be a finite number >= 0, got {r!r}")
        if not isinstance(self.add_bias, bool):
            raise InvalidTypeError(f"add_bias must be True or False, got {self.add_bias!r}")


def as_compensation(spec: object) -> Compensation:
    if isinstance(spec, Compensation):
        return spec
    if isinstance(spec, str):
        return Compensation(spec)
    get_method(spec)  # raises the error listing the methods
    raise AssertionError("unreachable")
