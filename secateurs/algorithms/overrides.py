"""Per-module ratio overrides: ``{"layer3.*": 0.7, "fc": 0.0}`` (glob or module path prefix)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping

from torch import nn

from secateurs.algorithms.select import IgnoreSpec
from secateurs.errors import InvalidArgumentError, InvalidTypeError
from secateurs.graph.groups import Group


def parse_overrides(overrides: Mapping[str, float] | None, model: nn.Module) -> dict[str, float]:
    if overrides is None:
        return {}
    if not isinstance(overrides, Mapping):
        raise InvalidTypeError(f"overrides must be a dict of module pattern -> ratio, got {type(overrides).__name__}")
    out: dict[str, float] = {}
    paths = [n for n, _ in model.named_modules()]
    for pattern, r in overrides.items():
        if not isinstance(pattern, str):
            raise InvalidTypeError(f"overrides keys must be module names or glob patterns, got {pattern!r}")
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0.0 <= float(r) < 1.0:
            raise InvalidArgumentError(f"overrides[{pattern!r}] must be a ratio in [0, 1) (the fraction removed), got {r!r}")
        if not any(IgnoreSpec.matches_name(pattern, p) for p in paths):
            warnings.warn(f"overrides pattern {pattern!r} matches no module of {type(model).__name__}", stacklevel=4)
        out[pattern] = float(r)
    return out


def override_for(group: Group, overrides: Mapping[str, float]) -> float | None:
    """The ratio of the first pattern (in the order given) that matches any module of the group."""
    modules = group.modules()
    for pattern, r in overrides.items():
        if any(IgnoreSpec.matches_name(pattern, m) for m in modules):
            return r
    return None
