"""Per-module ratio overrides: ``{"layer3.*": 0.7, "fc": 0.0}`` (glob or module path prefix).

A key ``"group:NAME"`` names one group exactly by its name (``"conv1.weight[dim 0]"``, as listed by
``analyze().summary()`` and by sensitivity analysis), for per-group ratios that module patterns cannot
express (a conv belongs to the group of its outputs and to the group of its inputs).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

from torch import nn

from secateurs.errors import InvalidArgumentError, InvalidTypeError
from secateurs.graph.groups import Group
from secateurs.selection.select import IgnoreSpec

GROUP_KEY = "group:"


def parse_overrides(overrides: Mapping[str, float] | None, model: nn.Module) -> dict[str, float]:
    if overrides is None:
        return {}
    if not isinstance(overrides, Mapping):
        raise InvalidTypeError(f"overrides must be a dict of module pattern -> ratio, got {type(overrides).__name__}")
    out: dict[str, float] = {}
    paths = [n for n, _ in model.named_modules()]
    params = {n for n, _ in model.named_parameters()} | {n for n, _ in model.named_buffers()}
    for pattern, r in overrides.items():
        if not isinstance(pattern, str):
            raise InvalidTypeError(f"overrides keys must be module names or glob patterns, got {pattern!r}")
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0.0 <= float(r) < 1.0:
            raise InvalidArgumentError(f"overrides[{pattern!r}] must be a ratio in [0, 1) (the fraction removed), got {r!r}")
        if pattern.startswith(GROUP_KEY):
            fqn = pattern[len(GROUP_KEY):].split("[", 1)[0]
            if fqn not in params:
                warnings.warn(f"overrides key {pattern!r} names no parameter of {type(model).__name__}", stacklevel=4)
        elif not any(IgnoreSpec.matches_name(pattern, p) for p in paths):
            warnings.warn(f"overrides pattern {pattern!r} matches no module of {type(model).__name__}", stacklevel=4)
        out[pattern] = float(r)
    return out


def override_for(group: Group, overrides: Mapping[str, float]) -> float | None:
    """The ratio of the first key (in the order given) that names the group or matches any of its modules."""
    modules = group.modules()
    for pattern, r in overrides.items():
        if pattern.startswith(GROUP_KEY):
            if pattern[len(GROUP_KEY):] == group.name:
                return r
        elif any(IgnoreSpec.matches_name(pattern, m) for m in modules):
            return r
    return None
