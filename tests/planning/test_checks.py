"""Every registered plan check runs before surgery, on a fixture of the model class it is registered for."""

from __future__ import annotations

import pytest
import torch

import secateurs as sc
from secateurs.planning.checks import PLAN_CHECKS, run_plan_checks
from secateurs.registry import key_name
from secateurs.testing.toys import MLP

transformers = pytest.importorskip("transformers")
from secateurs.integrations.hf import handlers  # noqa: E402,F401  (registers the Hugging Face check)


def _hf_check():
    from secateurs.testing.hf import tiny

    t = tiny("bert")
    return t.model, sc.plan(t.model, t.inputs, ratio={"heads": 0.5}, valid_heads=False), "derives the head size"


#: registry key -> (model, plan, substring of the warning the check must give)
FIXTURES = {"transformers.modeling_utils.PreTrainedModel": _hf_check}


@pytest.mark.parametrize("key", [key_name(k) for k in PLAN_CHECKS.entries()])
def test_every_plan_check(key):
    if key not in FIXTURES:
        pytest.fail(f"plan check {key} has no fixture in {__file__}")
    model, plan, expect = FIXTURES[key]()
    with pytest.warns(sc.errors.PlanCheckWarning, match=expect):
        messages = run_plan_checks(model, plan)
    assert messages and plan.settings["checks"] == messages


def test_models_without_a_check_are_left_alone():
    model, x = MLP().eval(), torch.randn(2, 6)
    plan = sc.plan(model, x, ratio=0.5)
    assert run_plan_checks(model, plan) == [] and "checks" not in plan.settings
