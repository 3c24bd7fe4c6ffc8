"""Registry of per-op coupling rules, keyed by ATen operator name.

A rule is ``fn(ctx: RuleContext) -> None``; it must account for every dimension of every tensor
input and output of its node (join it, link it, put it in a product, or freeze it). Dimensions a
rule leaves unmentioned are frozen with a reason, so a forgotten dimension is never guessed.
Rules live one op family per module in this package; importing the package registers them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from secateurs.registry import Registry

if TYPE_CHECKING:
    from secateurs.graph.context import RuleContext

Rule = Callable[["RuleContext"], None]
RULES: Registry[Rule] = Registry("coupling rule", package=__name__)
register = RULES.register


def rule_key(target: str) -> str | None:
    """The registered name a full op name like ``aten.add_.Tensor`` resolves to: the name itself, its packet
    (``aten.add_``), or for an in-place op its base (``aten.add``, ``aten.add.Tensor``); None without a rule."""
    packet = target.rsplit(".", 1)[0] if target.count(".") >= 2 else target
    tries = [target, packet]
    if packet.endswith("_") and not packet.endswith("__"):
        tries += [packet[:-1], f"{packet[:-1]}.{target.rsplit('.', 1)[-1]}"]
    return next((k for k in tries if k in RULES), None)


def lookup(target: str) -> Rule | None:
    """The rule for a full op name (see ``rule_key``), or None."""
    key = rule_key(target)
    return None if key is None else RULES.find(key)
