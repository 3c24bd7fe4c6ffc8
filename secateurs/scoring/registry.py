"""Registry of importance criteria, keyed by name."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from secateurs.config import CriterionSpec
from secateurs.errors import InvalidArgumentError, InvalidTypeError
from secateurs.graph.groups import Group
from secateurs.registry import Registry

if TYPE_CHECKING:
    from secateurs.calibration.stats import Statistics


@dataclass
class ScoringContext:
    """What a criterion may read: the model's tensors, and (for data-driven criteria) statistics."""

    model: torch.nn.Module
    tensors: Mapping[str, torch.Tensor]  # a dict, or a mapping that reads each tensor when asked (out of core)
    seed: int = 0
    extras: dict[str, Any] = field(default_factory=dict)
    stats: Statistics | None = None
    notes: list[str] = field(default_factory=list)  # fallbacks taken while scoring, recorded in the plan

    @property
    def params(self) -> Mapping[str, torch.Tensor]:
        """Trainable parameters only (buffers such as running_var are sliced, never scored); a view of
        ``tensors`` that reads no tensor before it is asked for."""
        cached = self.extras.get("_params")
        if cached is None:
            names = frozenset(n for n, _ in self.model.named_parameters())
            cached = self.extras["_params"] = _Only(self.tensors, names)
        return cached

    def module(self, fqn: str) -> tuple[torch.nn.Module | None, str]:
        """(owning module, attribute name) of a parameter FQN."""
        path, _, attr = fqn.rpartition(".")
        try:
            return self.model.get_submodule(path), attr
        except AttributeError:
            return None, attr


class _Only(Mapping[str, torch.Tensor]):
    """The entries of ``tensors`` whose names are in ``names``."""

    def __init__(self, tensors: Mapping[str, torch.Tensor], names: frozenset[str]) -> None:
        self._tensors, self._names = tensors, names

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self._names:
            raise KeyError(key)
        return self._tensors[key]

    def __iter__(self) -> Iterator[str]:
        return (k for k in self._tensors if k in self._names)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class Criterion(Protocol):
    """``scores`` returns one float per unit of ``group`` (higher = more important).

    Optional attributes: ``needs_grads`` (calibration runs backward through ``loss_fn``), ``grad_stats``
    (which gradient accumulators it reads: ``("sum",)``, ``("sq",)``; both by default) and
    ``normalize`` (the per-group normalisation global ranking uses unless the caller picks one).
    """

    name: str
    needs_data: bool

    def scores(self, group: Group, ctx: ScoringContext) -> np.ndarray: ...


CRITERIA: Registry[Callable[[], Criterion]] = Registry("importance criterion", package="secateurs.scoring",
                                                     skip=("registry", "score"))
register_criterion = CRITERIA.register


def get_criterion(spec: str | CriterionSpec | Criterion) -> Criterion:
    """A criterion from its registry name, a ``CriterionSpec`` (name + fields, as config files write it), or an
    object with ``.scores()`` (returned as it is)."""
    if isinstance(spec, CriterionSpec):
        built = CRITERIA.get(spec.name)()
        if not spec.options:
            return built
        if not dataclasses.is_dataclass(built):
            raise InvalidArgumentError(f"criterion {spec.name!r} takes no options, got {dict(spec.options)}")
        known = {f.name for f in dataclasses.fields(built) if f.init}
        unknown = sorted(set(spec.options) - known)
        if unknown:
            raise InvalidArgumentError(f"criterion {spec.name!r} has no options {unknown}; it has {sorted(known)}")
        return dataclasses.replace(built, **spec.options)  # type: ignore[type-var]
    if not isinstance(spec, str):
        if not hasattr(spec, "scores"):
            raise InvalidTypeError(f"importance must be a criterion name or an object with .scores(), got {type(spec).__name__}")
        return spec
    return CRITERIA.get(spec)()


def criterion_name(criterion: Criterion) -> str:
    return str(getattr(criterion, "name", type(criterion).__name__))
