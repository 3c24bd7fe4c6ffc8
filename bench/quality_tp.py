"""Torch-Pruning 1.6.1's side of bench_quality.py, through its public API only.

One-shot pruning with ``tp.pruner.BasePruner`` (``MetaPruner`` is its alias) and the importance
criteria TP ships, the classifier in ``ignored_layers``; a MAC target found by bisecting
``pruning_ratio`` with TP's own counter, as a TP user would; and the sparsity-training flows of
``BNScalePruner`` (network slimming) and ``GroupNormPruner`` (its group regularizer), whose
``regularize(model)`` runs between ``backward()`` and ``optimizer.step()`` through a step pre-hook.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from digits_cnn import Batch, OptimizerFactory
from torch import nn

# name -> importance factory (names as in our registry where the method is the same)
IMPORTANCES: dict[str, Callable[[], Any]] = {
    "l1": lambda: _tp().importance.MagnitudeImportance(p=1),
    "l2": lambda: _tp().importance.MagnitudeImportance(p=2),
    "fpgm": lambda: _tp().importance.FPGMImportance(),
    "lamp": lambda: _tp().importance.LAMPImportance(),
    "bn_scale": lambda: _tp().importance.BNScaleImportance(),
    "taylor": lambda: _tp().importance.TaylorImportance(),
}
GRADIENT = ("taylor",)


def _tp() -> Any:
    import torch_pruning as tp

    return tp


def available() -> bool:
    try:
        _tp()
    except ImportError:
        return False
    return True


def classifier(model: nn.Module) -> nn.Module:
    """The last Linear: its outputs are the logits, so it is never pruned (TP needs to be told)."""
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1]


def _gradients(model: nn.Module, calibration: list[Batch]) -> None:
    """Summed cross-entropy gradients over the calibration batches, in eval mode (BN statistics untouched)."""
    was = model.training
    model.eval()
    model.zero_grad()
    for x, y in calibration:
        F.cross_entropy(model(x), y).backward()
    model.train(was)


def ratios_for_widths(model: nn.Module, widths: dict[str, int]) -> dict[nn.Module, float]:
    """``pruning_ratio_dict`` under which TP keeps exactly ``widths[name]`` output channels of each named layer.

    TP keeps ``int(n * (1 - ratio))`` channels (it removes ``ceil``), secateurs removes ``floor(n * ratio)``:
    at 30% of 32 channels TP keeps 22, secateurs 23. Comparing criteria needs equal widths, so TP gets
    the per-layer ratio ``1 - (k + 0.5) / n``, whose ``int(n * (1 - ratio))`` is ``k``.
    """
    out = {}
    for name, k in widths.items():
        n = model.get_submodule(name).out_channels
        out[model.get_submodule(name)] = 1.0 - (k + 0.5) / n
    return out


def prune(model: nn.Module, example: torch.Tensor, importance: str, ratio: float, calibration: list[Batch],
          global_pruning: bool = False, pruner: str = "BasePruner", widths: dict[str, int] | None = None,
          **pruner_kw: Any) -> nn.Module:
    """Prune ``model`` in place with TP, one step, ``ratio`` of channels (or exactly ``widths``, see
    ``ratios_for_widths``); returns the model."""
    tp = _tp()
    cls = getattr(tp.pruner, pruner)
    if widths:
        pruner_kw["pruning_ratio_dict"] = ratios_for_widths(model, widths)
    p = cls(model, example, importance=IMPORTANCES[importance](), pruning_ratio=ratio,
            global_pruning=global_pruning, ignored_layers=[classifier(model)], **pruner_kw)
    if importance in GRADIENT:
        _gradients(model, calibration)
    p.step()
    model.zero_grad(set_to_none=True)
    return model


def macs(model: nn.Module, example: torch.Tensor) -> float:
    return float(_tp().utils.count_ops_and_params(model, example)[0])


def ratio_for_macs(model: nn.Module, example: torch.Tensor, importance: str, keep: float,
                   calibration: list[Batch], global_pruning: bool = False, steps: int = 10) -> float:
    """The ``pruning_ratio`` whose result keeps the MAC fraction nearest ``keep`` (TP's counter), by bisection."""
    full = macs(model, example)
    lo, hi, best, best_err = 0.0, 0.95, 0.0, float("inf")
    for _ in range(steps):
        mid = (lo + hi) / 2
        frac = macs(prune(copy.deepcopy(model), example, importance, mid, calibration, global_pruning), example) / full
        if abs(frac - keep) < best_err:
            best, best_err = mid, abs(frac - keep)
        if frac > keep:
            lo = mid
        else:
            hi = mid
    return best


def sparsity_pruner(kind: str, model: nn.Module, example: torch.Tensor, reg: float, ratio: float = 0.5,
                    widths: dict[str, int] | None = None) -> Any:
    """TP's sparsity-training pruner: ``bnscale`` (BNScalePruner + BNScaleImportance) or ``groupnorm``
    (GroupNormPruner + group L2 magnitude), as in TP's benchmark scripts."""
    tp = _tp()
    kw: dict[str, Any] = {"pruning_ratio": ratio, "ignored_layers": [classifier(model)]}
    if widths:
        kw["pruning_ratio_dict"] = ratios_for_widths(model, widths)
    if kind == "bnscale":
        return tp.pruner.BNScalePruner(model, example, importance=tp.importance.BNScaleImportance(), reg=reg, **kw)
    if kind == "groupnorm":
        return tp.pruner.GroupNormPruner(model, example, importance=tp.importance.GroupMagnitudeImportance(p=2),
                                         reg=reg, **kw)
    raise ValueError(f"unknown TP sparsity flow {kind!r}; use bnscale or groupnorm")


def regularized(factory: OptimizerFactory, pruner: Any, model: nn.Module) -> OptimizerFactory:
    """Wrap an optimizer factory so TP's ``pruner.regularize(model)`` edits the gradients before each step."""

    def make(params: Any) -> torch.optim.Optimizer:
        opt = factory(params)
        opt.register_step_pre_hook(lambda o, a, k: pruner.regularize(model))
        return opt

    return make
