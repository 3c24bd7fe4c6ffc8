"""2:4 semi-structured sparsity of ``nn.Linear`` weights: plan the masks, then apply them in place.

Every row of a weight keeps the 2 best of each group of 4 consecutive input weights (the pattern
sparse tensor cores on Ampere and newer GPUs accelerate). Scores come from ``scores.py``
(``magnitude``: |W|, ``wanda``: |W|·||X||). On CPU the zeros are stored in dense weights: the model
is exactly as fast as before; see ``convert.py`` for the CUDA conversion.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from secateurs.algorithms.select import IgnoreSpec
from secateurs.errors import ApplyError, InvalidArgumentError, InvalidTypeError
from secateurs.sparsity.masks import is_n_of_m, n_of_m_mask, zero_fraction
from secateurs.sparsity.scores import get_method

PATTERN = "2:4"
CPU_NOTE = ("2:4 masks are applied to dense weights: no speed-up is expected on CPU; the sparse kernels need a CUDA "
            "GPU with sparse tensor cores (Ampere or newer) and fp16/bf16 weights (secateurs.sparsity.to_semi_structured_)")


@dataclass
class LayerSparsity:
    name: str  # module path of the nn.Linear
    shape: tuple[int, int]
    sparsity: float  # fraction of zero weights after masking

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "sparsity": self.sparsity}


@dataclass
class SparsityResult:
    """What ``sparsify_2to4`` did: masks per weight FQN, per-layer sparsity and the layers skipped, with why."""

    method: str
    masks: dict[str, torch.Tensor] = field(repr=False)  # "<module path>.weight" -> bool mask, True = kept
    layers: list[LayerSparsity]
    skipped: dict[str, str]  # module path -> reason
    notes: list[str] = field(default_factory=list)

    @property
    def sparsity(self) -> float:
        """Fraction of zeros over all masked weights."""
        total = sum(layer.shape[0] * layer.shape[1] for layer in self.layers)
        zeros = sum(layer.sparsity * layer.shape[0] * layer.shape[1] for layer in self.layers)
        return zeros / total if total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"pattern": PATTERN, "method": self.method, "sparsity": self.sparsity,
                "layers": [layer.to_dict() for layer in self.layers], "skipped": dict(self.skipped),
                "notes": list(self.notes)}

    def summary(self) -> str:
        lines = [f"2:4 sparsity ({self.method}): {len(self.layers)} Linear layers masked, "
                 f"{self.sparsity:.1%} of their weights zero; {len(self.skipped)} skipped"]
        lines += [f"  skipped {name}: {why}" for name, why in self.skipped.items()]
        return "\n".join(lines)


def _candidates(model: nn.Module, ignore: IgnoreSpec) -> tuple[list[tuple[str, nn.Linear]], dict[str, str]]:
    chosen: list[tuple[str, nn.Linear]] = []
    skipped: dict[str, str] = {}
    owners: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        owners.setdefault(id(p), []).append(name)
    for path, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        tied = owners.get(id(module.weight), [])
        if ignore.matches(path, module):
            skipped[path] = "ignored"
        elif len(tied) > 1:
            skipped[path] = f"weight is tied to {', '.join(n for n in tied if n != f'{path}.weight')} (masking would change both)"
        elif module.weight.is_meta:
            skipped[path] = "weights on the meta device"
        elif module.in_features % 4:
            skipped[path] = f"in_features={module.in_features} is not a multiple of 4"
        else:
            chosen.append((path, module))
    return chosen, skipped


def _statistics(model: nn.Module, calibration: Any, method: str) -> Any:
    from secateurs.calibration.collect import collect
    from secateurs.calibration.stats import Statistics

    if calibration is None:
        raise InvalidArgumentError(f"2:4 method {method!r} needs calibration data: pass calibration=<iterable of "
                                   "batches shaped like the model's inputs> or precomputed Statistics "
                                   "(CLI: --calibration DIR|FILE.txt|synthetic)")
    return calibration if isinstance(calibration, Statistics) else collect(model, calibration)


def plan_2to4(
    model: nn.Module,
    method: str = "magnitude",
    *,
    calibration: Any = None,
    ignore: Iterable[str | type] | str | type | None = None,
) -> SparsityResult:
    """Compute 2:4 masks for every ``nn.Linear`` of ``model`` (the model is not changed)."""
    if not isinstance(model, nn.Module):
        raise InvalidTypeError(f"plan_2to4 needs an nn.Module, got {type(model).__name__}")
    scorer = get_method(method)
    spec = IgnoreSpec.parse(ignore)
    for pattern in spec.unmatched(model):
        warnings.warn(f"2:4 ignore pattern {pattern!r} matches no module of {type(model).__name__}", stacklevel=3)
    chosen, skipped = _candidates(model, spec)
    stats = _statistics(model, calibration, method) if scorer.needs_data and chosen else None
    if not scorer.needs_data and calibration is not None:
        warnings.warn(f"calibration data is not used by 2:4 method {method!r}", stacklevel=3)
    masks: dict[str, torch.Tensor] = {}
    layers = []
    for path, module in chosen:
        mask = n_of_m_mask(scorer.fn(module, path, stats)).to(module.weight.device)
        masks[f"{path}.weight" if path else "weight"] = mask
        zeros = int((~mask | (module.weight.detach() == 0)).sum())
        layers.append(LayerSparsity(path, (module.out_features, module.in_features), zeros / mask.numel()))
    notes = [CPU_NOTE]
    if any("multiple of 4" in why for why in skipped.values()):
        notes.append("layers whose in_features is not a multiple of 4 were skipped (with structured pruning, "
                     "round_to=4 keeps widths 2:4-friendly)")
    if not layers:
        notes.append("no Linear layer was masked")
    return SparsityResult(method, masks, layers, skipped, notes)


def apply_masks_(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Zero the weights outside ``masks`` in place; all-or-nothing: on any error every weight is restored."""
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        if name not in params:
            raise ApplyError(f"2:4 mask for {name!r}: the model has no such parameter")
        if tuple(params[name].shape) != tuple(mask.shape):
            raise ApplyError(f"2:4 mask for {name!r} has shape {tuple(mask.shape)}, the weight {tuple(params[name].shape)}")
        if not is_n_of_m(mask):
            raise ApplyError(f"mask for {name!r} does not keep exactly 2 of every 4 input weights")
    backup = {name: params[name].detach().clone() for name in masks}
    try:
        with torch.no_grad():
            for name, mask in masks.items():
                params[name].mul_(mask.to(params[name].device, params[name].dtype))
    except BaseException:
        with torch.no_grad():
            for name, saved in backup.items():
                params[name].copy_(saved)
        raise


def sparsify_2to4(
    model: nn.Module,
    method: str = "magnitude",
    *,
    calibration: Any = None,
    ignore: Iterable[str | type] | str | type | None = None,
) -> SparsityResult:
    """Mask every ``nn.Linear`` weight to 2:4 in place (2 kept of every 4 along the input dim).

    ``method``: ``"magnitude"`` (|W|) or ``"wanda"`` (|W|·||X||, needs ``calibration`` batches or
    ``Statistics``). ``ignore``: module paths, globs or types left dense. Layers whose ``in_features`` is
    not a multiple of 4 are skipped and listed in ``result.skipped``. Transactional.
    """
    result = plan_2to4(model, method, calibration=calibration, ignore=ignore)
    apply_masks_(model, result.masks)
    for layer in result.layers:
        layer.sparsity = zero_fraction(model.get_parameter(f"{layer.name}.weight" if layer.name else "weight").detach())
    return result
