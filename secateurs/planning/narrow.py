"""A ratio request whose result no stock config describes, narrowed to the unit kinds one can (``valid_heads``).

Count constraints (``selection/constraints.py``) move counts before scoring from what the discovered config fields
predict. The plan check registered for the model's class (``planning/checks.py``: for Hugging Face, a rebuild of
the class from the rewritten config on the meta device) is the ground truth; where the prediction was wrong (a
width rounded to a multiple inside the modeling code, a float field that sets two sizes), the plan it rejects would
give a model that does not reload with its stock class. With ``valid_heads=True`` (the default) the request is
then narrowed: the fewest kinds of the ratio dict are left whole (``{"heads": 0.25, "ffn": 0.3}`` -> ``{"ffn":
0.3}`` or ``{"heads": 0.25}``, whichever removes more units and passes the check), a warning says what and why,
and ``plan.settings["narrowed"]`` records it. The plan keeps the request as its config, so replaying it narrows
the same way.
"""

from __future__ import annotations

import dataclasses
import itertools
import warnings
from collections.abc import Callable, Mapping

from torch import nn

from secateurs.config import PruneConfig
from secateurs.planning.checks import PLAN_CHECKS
from secateurs.plans import Plan
from secateurs.targets import Ratio

MakePlan = Callable[[PruneConfig], Plan]


def narrowed(model: nn.Module, config: PruneConfig, make: MakePlan, plan: Plan,
             alone: bool = True) -> tuple[Plan, list[Warning] | None]:
    """``plan`` (made by ``make(config)``), or the plan of the narrowest-cut request the model's plan check passes;
    with the check's findings on the plan returned (None: not checked here). Plans that also drop, merge or rotate
    are left to the check that follows, which sees the whole plan (``alone=False``)."""
    check = PLAN_CHECKS.for_type(type(model))
    target = config.width_target()
    if check is None or not config.valid_heads or not plan.removed_units() or not isinstance(target, Ratio) \
            or not isinstance(target.value, Mapping) or not alone:
        return plan, None
    kinds = [k for k, v in target.value.items() if v > 0]
    if len(kinds) < 2:
        return plan, None
    problems = check(model, plan)
    if not problems:
        return plan, problems
    for n in range(1, len(kinds)):
        tried = []
        for left in itertools.combinations(kinds, n):
            ratios = {k: 0.0 if k in left else v for k, v in target.value.items()}
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                candidate = make(dataclasses.replace(config, target=Ratio(ratios)))
            if candidate.removed_units() and not check(model, candidate):
                tried.append((candidate.removed_units(), left, ratios, candidate, caught))
        if tried:
            _, left, ratios, best, caught = max(tried, key=lambda t: t[0])
            for w in caught:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            why = str(problems[0])
            best.settings["narrowed"] = {"asked": dict(target.value), "used": ratios, "kept_whole": list(left),
                                         "why": why}
            best.config = config
            warnings.warn(f"a stock config cannot describe the result of ratio {dict(target.value)} ({why}); pruned "
                          f"with {ratios} instead, which it can (plan.settings['narrowed']; valid_heads=False keeps "
                          "the request, and the result then saves with secateurs.save)", stacklevel=3)
            return best, []
    return plan, problems
