"""secateurs: structured pruning for PyTorch models.

``import secateurs`` is cheap: the verbs below load their machinery on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from secateurs._version import __version__
from secateurs.errors import SecateursError

if TYPE_CHECKING:
    from secateurs.api import analyze, apply, count, plan, prune, verify
    from secateurs.compensation import compensate
    from secateurs.config import CriterionSpec, PruneConfig
    from secateurs.io import load, save
    from secateurs.outofcore import prune_checkpoint
    from secateurs.planning.family import plan_family
    from secateurs.planning.sensitivity import sensitivity
    from secateurs.plans import Plan
    from secateurs.quantization.qat import convert_int8
    from secateurs.recovery import iterative_prune, recover, regularizers
    from secateurs.scoring.score import score
    from secateurs.sheared import shear
    from secateurs.sparsity import sparsify_2to4
    from secateurs.targets import Budget, LatencyTarget, Ratio

_LAZY = {
    "analyze": "secateurs.api", "plan": "secateurs.api", "apply": "secateurs.api", "verify": "secateurs.api",
    "prune": "secateurs.api", "count": "secateurs.api", "Plan": "secateurs.plans",
    "recover": "secateurs.recovery", "iterative_prune": "secateurs.recovery", "regularizers": "secateurs.recovery",
    "save": "secateurs.io", "load": "secateurs.io", "sparsify_2to4": "secateurs.sparsity",
    "compensate": "secateurs.compensation",
    "LatencyTarget": "secateurs.targets", "Ratio": "secateurs.targets", "Budget": "secateurs.targets", "PruneConfig": "secateurs.config", "CriterionSpec": "secateurs.config",
    "score": "secateurs.scoring.score", "sensitivity": "secateurs.planning.sensitivity",
    "plan_family": "secateurs.planning.family", "convert_int8": "secateurs.quantization.qat",
    "shear": "secateurs.sheared", "prune_checkpoint": "secateurs.outofcore",
}

__all__ = ["Budget", "CriterionSpec", "LatencyTarget", "Plan", "PruneConfig", "Ratio", "SecateursError", "__version__", "analyze", "apply", "compensate", "convert_int8", "count",
           "iterative_prune", "load", "plan", "plan_family", "prune", "prune_checkpoint", "recover", "regularizers", "save", "score", "sensitivity",
           "shear", "sparsify_2to4", "verify"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'secateurs' has no attribute {name!r}")
