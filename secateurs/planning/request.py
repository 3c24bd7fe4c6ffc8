"""The model-dependent reading of a PruneConfig: resolved ratios and targets, limits, ignore and overrides."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from secateurs.config import PruneConfig
from secateurs.scoring.registry import Criterion
from secateurs.selection.normalize import check_normalize
from secateurs.selection.overrides import parse_overrides
from secateurs.selection.select import IgnoreSpec, Limits
from secateurs.targets import DEFAULT_KINDS, Budget, LatencyTarget, Ratio


@dataclass
class Request:
    """What selection works with: ratios per unit kind (zero under a budget), budget targets (fractions kept),
    the normalisation global ranking uses, limits, overrides (checked against the model) and ignored modules."""

    ratios: dict[str, float]
    targets: dict[str, float]
    scope: str
    normalize: str
    limits: Limits
    overrides: dict[str, float]
    ignore: IgnoreSpec
    latency: LatencyTarget | None = None


def read_request(model: torch.nn.Module, criterion: Criterion, config: PruneConfig) -> Request:
    target = config.width_target()
    targets: dict[str, float] = {}
    if isinstance(target, Ratio):
        ratios = target.ratios()
    else:
        ratios = dict.fromkeys(DEFAULT_KINDS, 0.0)
        if isinstance(target, Budget):
            targets.update(target.targets())
        else:
            targets["latency"] = target.fraction
    how = check_normalize(config.normalize if config.normalize is not None
                          else str(getattr(criterion, "normalize", "mean")))
    spec = IgnoreSpec.parse(config.ignore)
    for pattern in spec.unmatched(model):
        warnings.warn(f"ignore pattern {pattern!r} matches no module of {type(model).__name__}", stacklevel=5)
    limits = Limits(config.round_to, config.min_keep, config.max_ratio)
    latency = target if isinstance(target, LatencyTarget) else None
    return Request(ratios, targets, config.scope, how, limits, parse_overrides(config.overrides, model), spec, latency)
