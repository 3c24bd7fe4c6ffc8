"""Registry of importance criteria, keyed by name."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from secateurs.errors import InvalidArgumentError, InvalidTypeError
from secateurs.graph.groups import Group

if TYPE_CHECKING:
    from secateurs.calibration.stats import Statistics


@dataclass
class ScoringContext:
    """What a criterion may read: the model's tensors, and (for data-driven criteria) statistics."""

    model: torch.nn.Module
    tensors: dict[str, torch.Tensor]
    seed: int = 0
    extras: dict[str, Any] = field(default_factory=dict)
    stats: Statistics | None = None
    notes: list[str] = field(default_factory=list)  # fallbacks taken while scoring, recorded in the plan

    @property
    def params(self) -> dict[str, torch.Tensor]:
        """Trainable parameters only (buffers such as running_var are sliced, never scored)."""
        cached = self.extras.get("_params")
        if cached is None:
            names = {n for n, _ in self.model.named_parameters()}
            cached = self.extras["_params"] = {k: v for k, v in self.tensors.items() if k in names}
        return cached

    def module(self, fqn: str) -> tuple[torch.nn.Module | None, str]:
        """(owning module, attribute name) of a parameter FQN."""
        path, _, attr = fqn.rpartition(".")
        try:
            return self.model.get_submodule(path), attr
        except AttributeError:
            return None, attr


class Criterion(Protocol):
    """``scores`` returns one float per unit of ``group`` (higher = more important).

    Optional attributes: ``needs_grads`` (calibration runs backward through ``loss_fn``), ``grad_stats``
    (which gradient accumulators it reads: ``("sum",)``, ``("sq",)``; both by default) and
    ``normalize`` (the per-group normalisation global ranking uses unless the caller picks one).
    """

    name: str
    needs_data: bool

    def scores(self, group: Group, ctx: ScoringContext) -> np.ndarray: ...


_CRITERIA: dict[str, Callable[[], Criterion]] = {}
_LOADED = False


def register_criterion(name: str) -> Callable[[Callable[[], Criterion]], Callable[[], Criterion]]:
    def deco(factory: Callable[[], Criterion]) -> Callable[[], Criterion]:
        if name in _CRITERIA:
            raise RuntimeError(f"criterion {name!r} registered twice")
        _CRITERIA[name] = factory
        return factory

    return deco


def _load() -> None:
    global _LOADED
    if not _LOADED:
        import secateurs.scoring as pkg

        for info in pkgutil.iter_modules(pkg.__path__):
            if info.name not in ("registry",) and not info.name.startswith("_"):
                importlib.import_module(f"secateurs.scoring.{info.name}")
        _LOADED = True


def registered_criteria() -> list[str]:
    _load()
    return sorted(_CRITERIA)


def get_criterion(spec: str | Criterion) -> Criterion:
    if not isinstance(spec, str):
        if not hasattr(spec, "scores"):
            raise InvalidTypeError(f"importance must be a criterion name or an object with .scores(), got {type(spec).__name__}")
        return spec
    _load()
    if spec not in _CRITERIA:
        raise InvalidArgumentError(f"unknown importance criterion {spec!r}; choose one of {', '.join(sorted(_CRITERIA))}")
    return _CRITERIA[spec]()


def criterion_name(criterion: Criterion) -> str:
    return str(getattr(criterion, "name", type(criterion).__name__))
