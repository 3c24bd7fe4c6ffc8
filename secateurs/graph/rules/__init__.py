"""Registry of per-op coupling rules, keyed by ATen operator name.

A rule is ``fn(ctx: RuleContext) -> None``; it must account for every dimension of every tensor
input and output of its node (join it, link it, put it in a product, or freeze it). Dimensions a
rule leaves unmentioned are frozen with a reason, so a forgotten dimension is never guessed.
Rules live one op family per module in this package; importing the package registers them.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from secateurs.graph.context import RuleContext

Rule = Callable[["RuleContext"], None]
_RULES: dict[str, Rule] = {}
_LOADED = False


def register(*names: str) -> Callable[[Rule], Rule]:
    """Register ``fn`` for op names such as ``"aten.conv2d"`` (any overload) or ``"aten.add.Tensor"``."""

    def deco(fn: Rule) -> Rule:
        for name in names:
            if name in _RULES and _RULES[name] is not fn:
                raise RuntimeError(f"coupling rule for {name} registered twice")
            _RULES[name] = fn
        return fn

    return deco


def _load() -> None:
    global _LOADED
    if _LOADED:
        return
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    _LOADED = True


def lookup(target: str) -> Rule | None:
    """Find the rule for a full op name like ``aten.add_.Tensor`` (overload, packet, in-place base)."""
    _load()
    if target in _RULES:
        return _RULES[target]
    packet = target.rsplit(".", 1)[0] if target.count(".") >= 2 else target
    if packet in _RULES:
        return _RULES[packet]
    if packet.endswith("_") and not packet.endswith("__"):
        base = packet[:-1]
        if base in _RULES:
            return _RULES[base]
        overload = target.rsplit(".", 1)[-1]
        if f"{base}.{overload}" in _RULES:
            return _RULES[f"{base}.{overload}"]
    return None


def registered() -> dict[str, Rule]:
    _load()
    return dict(_RULES)
