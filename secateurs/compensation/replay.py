"""Recreate the biases a compensation added, when a saved pruned model is rebuilt from its plan."""

from __future__ import annotations

from typing import Any

from torch import nn

from secateurs.compensation.new_bias import zero_bias_
from secateurs.plans import Plan


def _record(plan: Plan) -> dict[str, Any]:
    rec = plan.settings.get("compensation")
    return rec if isinstance(rec, dict) else {}


def added_bias_shapes(plan: Plan) -> dict[str, list[int]]:
    """Parameter FQN -> shape of every bias the recorded compensation created."""
    return {f"{p}.bias" if p else "bias": [int(n)] for p, n in (_record(plan).get("added_biases") or {}).items()}


def add_recorded_biases_(model: nn.Module, plan: Plan) -> None:
    """After ``apply(model, plan)`` on a fresh model: create (zero) the biases and set the config flags the
    compensation recorded in ``plan.settings["compensation"]``, so the saved weights load."""
    rec = _record(plan)
    for path in rec.get("added_biases") or {}:
        module = model.get_submodule(path)
        if module._parameters.get("bias") is None:
            zero_bias_(module)
    config = getattr(model, "config", None)
    for flag, value in (rec.get("config_flags") or {}).items():
        if config is not None and hasattr(config, flag):
            setattr(config, flag, value)
