"""Checks run on a finished plan before any surgery, registered per model class (found through the MRO).

An integration registers ``check(model, plan) -> list[Warning]``: what the plan will produce that the user
should know before the model is changed (a Hugging Face config that cannot describe the pruned widths:
``StockConfigWarning``). ``run_plan_checks`` records the messages in ``plan.settings["checks"]`` and issues the
warnings; nothing is refused, since the pruned model itself is valid.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

from torch import nn

from secateurs.plans import Plan
from secateurs.plugins import load_integrations
from secateurs.registry import Registry

PlanCheck = Callable[[nn.Module, Plan], list[Warning]]

#: model class (or qualified class name) -> check of a plan for such a model
PLAN_CHECKS: Registry[PlanCheck] = Registry("plan check")


def run_plan_checks(model: nn.Module, plan: Plan, found: list[Warning] | None = None) -> list[str]:
    """Run the check registered for ``model``'s class (if any), record and issue its warnings; their messages.
    ``found``: the check's findings when the caller already has them for this very plan."""
    load_integrations(model)
    check = PLAN_CHECKS.for_type(type(model))
    if check is None or not plan.removed_units() and not plan.dropped_layers:
        return []
    if found is None:
        found = check(model, plan)
    plan.settings["checks"] = [str(w) for w in found]
    for warning in found:
        warnings.warn(warning, stacklevel=3)
    return [str(w) for w in found]
