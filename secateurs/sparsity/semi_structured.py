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

from secateurs.calibration.layouts import layout_for
from secateurs.errors import ApplyError, InvalidArgumentError, InvalidTypeError
from secateurs.selection.select import IgnoreSpec
from secateurs.sparsity.masks import is_n_of_m, n_of_m_mask, zero_fraction
from secateurs.sparsity.scores import get_method

PATTERN = "2:4"
CPU_NOTE = ("2:4 masks are applied to dense weights: no speed-up is expected on CPU; the sparse kernels need a CUDA "
            "GPU with sparse tensor cores (Ampere or newer) and fp16/bf16 weights (secateurs.sparsity.to_semi_structured_)")


@dataclass
class LayerSparsity:
    name: str  # module path of the nn.Linear
    shape: tuple[int, int]  # (out, in), also for Conv1D
    sparsity: float  # fraction of zero weights after masking
    in_dim: int = 1  # the weight dim holding inputs (0 for Hugging Face Conv1D)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "sparsity": self.sparsity, "in_dim": self.in_dim}


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


def linear_in_dim(module: nn.Module) -> int | None:
    """The input dim of a 2-D Linear-like weight (``nn.Linear``: 1, Hugging Face ``Conv1D``: 0), else None.

    Read from the calibration layout registry, so a layer type registered there as a matrix layer on the
    last activation dim is supported without touching this file.
    """
    layout = layout_for(module)
    weight = getattr(module, "weight", None)
    if layout is None or layout.weight_in is None or layout.act_dim != -1 or not isinstance(weight, torch.Tensor):
        return None
    return layout.weight_in if weight.ndim == 2 else None


def _weight_name(path: str) -> str:
    return f"{path}.weight" if path else "weight"


def _candidates(model: nn.Module, ignore: IgnoreSpec) -> tuple[list[tuple[str, nn.Module, int]], dict[str, str]]:
    chosen: list[tuple[str, nn.Module, int]] = []
    skipped: dict[str, str] = {}
    owners: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        owners.setdefault(id(p), []).append(name)
    for path, module in model.named_modules():
        in_dim = linear_in_dim(module)
        if in_dim is None:
            continue
        weight = module.weight
        tied = owners.get(id(weight), [])
        if ignore.matches(path, module):
            skipped[path] = "ignored"
        elif len(tied) > 1:
            skipped[path] = f"weight is tied to {', '.join(n for n in tied if n != _weight_name(path))} (masking would change both)"
        elif weight.is_meta:
            skipped[path] = "weights on the meta device"
        elif weight.shape[in_dim] % 4:
            skipped[path] = f"in_features={weight.shape[in_dim]} is not a multiple of 4"
        else:
            chosen.append((path, module, in_dim))
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
    """Compute 2:4 masks for every ``nn.Linear`` (and Hugging Face ``Conv1D``) of ``model``; the model is not changed."""
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
    for path, module, in_dim in chosen:
        weight: torch.Tensor = module.weight  # type: ignore[assignment]
        weight_oi = weight.detach() if in_dim == 1 else weight.detach().t()
        mask = n_of_m_mask(scorer.fn(weight_oi, path, stats)).to(weight_oi.device)
        zeros = int((~mask | (weight_oi == 0)).sum())
        masks[_weight_name(path)] = mask if in_dim == 1 else mask.t().contiguous()
        layers.append(LayerSparsity(path, (int(weight_oi.shape[0]), int(weight_oi.shape[1])), zeros / mask.numel(), in_dim))
    notes = [CPU_NOTE]
    if any("multiple of 4" in why for why in skipped.values()):
        notes.append("layers whose in_features is not a multiple of 4 were skipped (with structured pruning, "
                     "round_to=4 keeps widths 2:4-friendly)")
    if not layers:
        notes.append("no Linear layer was masked")
    return SparsityResult(method, masks, layers, skipped, notes)


def mask_in_dim(model: nn.Module, name: str) -> int | None:
    """The input dim of the Linear-like weight ``name`` ("<module path>.weight"), or None when it is not one."""
    path, _, attr = name.rpartition(".")
    try:
        module = model.get_submodule(path)
    except AttributeError:
        return None
    return linear_in_dim(module) if attr == "weight" else None


def apply_masks_(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Zero the weights outside ``masks`` in place; all-or-nothing: on any error every weight is restored."""
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        if name not in params:
            raise ApplyError(f"2:4 mask for {name!r}: the model has no such parameter")
        if tuple(params[name].shape) != tuple(mask.shape):
            raise ApplyError(f"2:4 mask for {name!r} has shape {tuple(mask.shape)}, the weight {tuple(params[name].shape)}")
        in_dim = mask_in_dim(model, name)
        if in_dim is None:
            raise ApplyError(f"2:4 mask for {name!r}: not the weight of a Linear-like layer")
        if not is_n_of_m(mask, in_dim=in_dim):
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
    """Mask every ``nn.Linear`` (and HF ``Conv1D``) weight to 2:4 in place (2 kept of every 4 along the input dim).

    ``method``: ``"magnitude"`` (|W|) or ``"wanda"`` (|W|·||X||, needs ``calibration`` batches or
    ``Statistics``). ``ignore``: module paths, globs or types left dense. Layers whose ``in_features`` is
    not a multiple of 4 are skipped and listed in ``result.skipped``. Transactional.
    """
    from secateurs.graph.program_limits import refuse_for_program

    refuse_for_program(model, sparsity=method)
    result = plan_2to4(model, method, calibration=calibration, ignore=ignore)
    apply_masks_(model, result.masks)
    for layer in result.layers:
        layer.sparsity = zero_fraction(model.get_parameter(_weight_name(layer.name)).detach())
    return result
