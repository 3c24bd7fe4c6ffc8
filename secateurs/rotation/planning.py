"""``rotate=True`` inside ``sc.plan``/``sc.prune``: rotate in place, plan with the hidden group scored by eigenvalue."""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from secateurs.config import PruneConfig
from secateurs.errors import InvalidArgumentError
from secateurs.graph.analysis import Analysis
from secateurs.graph.capture import ExampleInputs
from secateurs.plans import Plan
from secateurs.rotation.rotate import PrincipalAxesScores, Rotation, kept_variance, rotate_
from secateurs.scoring.registry import get_criterion


def rotate_for_plan(model: nn.Module, analysis: Analysis, example_inputs: ExampleInputs, config: PruneConfig,
                    calibration: Any) -> tuple[PruneConfig, Rotation | None]:
    """(the config to plan the width with, the rotation done) — ``config`` and None unless ``config.rotate``."""
    if not config.rotate:
        return config, None
    if calibration is None:
        raise InvalidArgumentError("rotate=True computes the rotation from activations: pass calibration=<iterable of "
                                   "batches shaped like example_inputs> (e.g. [{'input_ids': ids}, ...])")
    rotation = rotate_(model, analysis, example_inputs, calibration, tolerance=config.tolerance)
    scores = PrincipalAxesScores(get_criterion(config.importance), rotation.stream.group, rotation.axes.eigenvalues)
    return dataclasses.replace(config, importance=scores), rotation


def record_rotation(plan: Plan, rotation: Rotation | None, config: PruneConfig) -> Plan:
    """The plan with the user's config (not the eigenvalue scorer) and ``settings["rotation"]``."""
    plan.config = config
    if rotation is not None:
        plan.settings["rotation"] = {**rotation.record, "kept_variance": kept_variance(rotation, plan)}
    return plan
