"""``rotate=True`` inside ``sc.plan``/``sc.prune``: rotate in place, plan with the hidden group scored by eigenvalue."""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from secateurs.config import PruneConfig
from secateurs.errors import InvalidArgumentError
from secateurs.graph.analysis import Analysis, analyze
from secateurs.graph.capture import ExampleInputs
from secateurs.plans import Plan
from secateurs.rotation.rotate import PrincipalAxesScores, Rotation, kept_variance, rotate_
from secateurs.scoring.registry import get_criterion


def rotate_for_plan(model: nn.Module, analysis: Analysis, example_inputs: ExampleInputs, config: PruneConfig,
                    calibration: Any) -> tuple[PruneConfig, Rotation | None, Analysis]:
    """(the config to plan the width with, the rotation done, the analysis to plan on) — ``config``, None and
    ``analysis`` unless ``config.rotate`` (with ``rotate_per_layer`` the model is captured again: the shortcuts
    joined the stream)."""
    if not config.rotate:
        return config, None, analysis
    if calibration is None:
        raise InvalidArgumentError("rotate=True computes the rotation from activations: pass calibration=<iterable of "
                                   "batches shaped like example_inputs> (e.g. [{'input_ids': ids}, ...])")
    rotation = rotate_(model, analysis, example_inputs, calibration, tolerance=config.tolerance,
                       per_layer=config.rotate_per_layer)
    if config.rotate_per_layer:
        try:
            analysis = analyze(model, example_inputs)
        except Exception:
            rotation.undo()
            raise
    scores = PrincipalAxesScores(get_criterion(config.importance), rotation.stream.group, rotation.eigenvalues)
    return dataclasses.replace(config, importance=scores), rotation, analysis


def record_rotation(plan: Plan, rotation: Rotation | None, config: PruneConfig) -> Plan:
    """The plan with the user's config (not the eigenvalue scorer) and ``settings["rotation"]``."""
    plan.config = config
    if rotation is not None:
        plan.settings["rotation"] = {**rotation.record, "kept_variance": kept_variance(rotation, plan)}
    return plan
