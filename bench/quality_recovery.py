"""Recovery recipes and pruning flows of bench_quality.py (issue #6 evidence).

A *recipe* is how a pruned model is trained back (epochs, lr schedule, distillation). A *flow* is how the
pruned model is made from the trained one: a criterion at a ratio, optionally after sparsity training
(ours: ``sc.regularizers.bn_l1`` / ``group_lasso``; Torch-Pruning: ``BNScalePruner`` / ``GroupNormPruner``).
Every recovery, ours or Torch-Pruning's, goes through the same ``sc.recover`` loop with the same seed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import quality_ours
import quality_tp
import torch.nn.functional as F
from digits_cnn import Workload, cosine_sgd
from torch import nn

import secateurs as sc


@dataclass(frozen=True)
class Recipe:
    """``epochs`` of SGD (momentum 0.9) at ``lr``, constant or cosine-decayed; with ``distill`` the loss is
    ``alpha * KD(T) + (1 - alpha) * CE`` against the unpruned model."""

    name: str
    epochs: int
    lr: float = 0.01
    cosine: bool = False
    distill: bool = False
    alpha: float = 0.7
    temperature: float = 4.0


FINE_TUNE_3 = Recipe("fine-tune 3 ep", 3)


def recover(model: nn.Module, recipe: Recipe, w: Workload, teacher: nn.Module | None, seed: int) -> None:
    kw: dict[str, Any] = {"epochs": recipe.epochs, "seed": seed, "progress": False}
    if recipe.cosine:
        kw["optimizer"] = cosine_sgd(recipe.epochs * len(w.data), recipe.lr)
    else:
        kw["lr"] = recipe.lr
    if recipe.distill:
        if teacher is None:
            raise ValueError(f"recipe {recipe.name!r} distills but no teacher was given")
        kw.update(teacher=teacher, loss=F.cross_entropy, alpha=recipe.alpha, temperature=recipe.temperature)
    sc.recover(model, w.data, **kw)


@dataclass(frozen=True)
class Sparsity:
    """Sparsity training before pruning: ``kind`` in bn_l1, group_lasso (ours), bnscale, groupnorm (TP)."""

    kind: str
    lam: float
    epochs: int
    lr: float = 0.01
    proximal: bool = False  # ours only: soft-threshold after each step (reg.attach(opt, proximal=True))

    @property
    def label(self) -> str:
        return f"{self.kind}{' prox' if self.proximal else ''} λ={self.lam:g} x{self.epochs} ep"


def sparsity_train(base: nn.Module, s: Sparsity, w: Workload, seed: int) -> nn.Module:
    """A sparsity-trained copy of ``base`` (cosine SGD with the penalty added every step)."""
    m = copy.deepcopy(base)
    opt = cosine_sgd(s.epochs * len(w.data), s.lr)
    if s.kind in ("bnscale", "groupnorm"):
        pruner = quality_tp.sparsity_pruner(s.kind, m, w.example, s.lam)
        sc.recover(m, w.data, optimizer=quality_tp.regularized(opt, pruner, m), epochs=s.epochs, seed=seed,
                   progress=False)
        return m
    if s.kind == "bn_l1":
        reg: Any = sc.regularizers.bn_l1(m, s.lam)
    elif s.kind == "group_lasso":
        reg = sc.regularizers.group_lasso(m, sc.analyze(m, w.example), s.lam)
    else:
        raise ValueError(f"unknown sparsity kind {s.kind!r}")
    if s.proximal:
        def proximal(params: Any) -> Any:
            o = opt(params)
            reg.attach(o, proximal=True)
            return o

        sc.recover(m, w.data, optimizer=proximal, epochs=s.epochs, seed=seed, progress=False)
    else:
        sc.recover(m, w.data, regularizer=reg, optimizer=opt, epochs=s.epochs, seed=seed, progress=False)
    return m


@dataclass(frozen=True)
class Flow:
    """``tool`` (secateurs | torch-pruning) prunes with ``criterion`` (ours) / importance (TP), after
    ``sparsity`` training if set, at the ratio given to ``make``; ``scope`` local or global."""

    tool: str
    criterion: str
    sparsity: Sparsity | None = None
    scope: str = "local"
    compensate: str | None = None  # ours only: sc.prune(compensate=...) before recovery

    @property
    def label(self) -> str:
        tool = "secateurs" if self.tool == "secateurs" else "TP"
        pre = f"{self.sparsity.label} -> " if self.sparsity else ""
        pruner = ""
        if self.tool == "torch-pruning":
            kind = self.sparsity.kind if self.sparsity else ""
            pruner = {"bnscale": " BNScalePruner", "groupnorm": " GroupNormPruner"}.get(kind, " BasePruner")
        comp = f" + {self.compensate}" if self.compensate else ""
        return f"{tool}: {pre}{self.criterion}{pruner}{comp}" + (f" ({self.scope})" if self.scope != "local" else "")

    def make(self, start: nn.Module, ratio: float, w: Workload, seed: int) -> nn.Module:
        """A pruned copy of ``start`` (the trained model, or its sparsity-trained copy)."""
        m = copy.deepcopy(start)
        if self.tool == "secateurs":
            target = quality_ours.Target(f"{ratio:.0%}", ratio=ratio, scope=self.scope)
            quality_ours.prune(m, w.example, self.criterion, target, w.calibration, _ce_batch,
                               compensate=self.compensate, seed=seed)
            return m
        # TP rounds the other way (keeps int(n * (1 - ratio))): give it secateurs' widths, floor(n * ratio) removed
        widths = None if self.scope == "global" else local_widths(m, ratio)
        if self.sparsity and self.sparsity.kind in ("bnscale", "groupnorm"):
            pruner = quality_tp.sparsity_pruner(self.sparsity.kind, m, w.example, self.sparsity.lam, ratio, widths)
            pruner.step()
            return m
        return quality_tp.prune(m, w.example, self.criterion, ratio, w.calibration,
                                global_pruning=self.scope == "global", widths=widths)


def local_widths(model: nn.Module, ratio: float) -> dict[str, int]:
    """Output channels secateurs keeps in every conv at a local ``ratio``: ``n - floor(n * ratio)``."""
    return {n: m.out_channels - int(m.out_channels * ratio) for n, m in model.named_modules()
            if isinstance(m, nn.Conv2d)}


def _ce_batch(output: Any, batch: Any) -> Any:
    return F.cross_entropy(output, batch[1])


Row = dict[str, Any]


def run(base: nn.Module, plan: list[tuple[Flow, list[Recipe]]], ratios: list[float], w: Workload, seed: int,
        log: Callable[[str], None] = print) -> list[Row]:
    """Every flow at every ratio, each recovered by each of its recipes; sparsity training is shared by the
    flows (and ratios) that use the same settings."""
    teacher = copy.deepcopy(base).eval()
    sparse: dict[Sparsity, nn.Module] = {}
    rows: list[Row] = []
    for flow, recipes in plan:
        start = base
        if flow.sparsity is not None:
            if flow.sparsity not in sparse:
                sparse[flow.sparsity] = sparsity_train(base, flow.sparsity, w, seed)
            start = sparse[flow.sparsity]
        for ratio in ratios:
            pruned = flow.make(start, ratio, w, seed)
            acc0 = w.accuracy(pruned)
            for recipe in recipes:
                m = copy.deepcopy(pruned)
                recover(m, recipe, w, teacher, seed)
                rows.append({"section": "recovery", "flow": flow.label, "tool": flow.tool, "ratio": ratio,
                             "recipe": recipe.name, "seed": seed, "pruned": acc0, "recovered": w.accuracy(m),
                             "params": sum(p.numel() for p in m.parameters())})
                log(f"  seed {seed} {ratio:.0%} {flow.label:<48} {recipe.name:<22} "
                    f"pruned {acc0:.4f} -> {rows[-1]['recovered']:.4f}")
    return rows
