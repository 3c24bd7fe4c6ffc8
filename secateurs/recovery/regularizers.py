"""Sparsity regularizers that push whole prunable units toward zero before pruning.

- ``bn_l1``: Network Slimming (Liu et al., 2017), an L1 penalty on BatchNorm scales.
- ``group_lasso``: the L2 norm of every unit of every secateurs group, summed over units and groups, so the
  slices one unit removes (conv rows, BN entries, the next layer's columns) shrink together.

Each returns an object that is both a callable returning the penalty (add it to the loss, or pass it as
``recover(regularizer=...)``) and an optimizer hook: ``attach(optimizer)`` adds subgradients before every
step, ``attach(optimizer, proximal=True)`` applies the proximal (soft-threshold) map after every step, which
sets small units exactly to zero.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from secateurs.errors import InvalidArgumentError, InvalidTypeError
from secateurs.graph.analysis import Analysis
from secateurs.graph.groups import Group

_EPS = 1e-12


def _check_lam(lam: float) -> float:
    if not isinstance(lam, (int, float)) or lam < 0:
        raise InvalidArgumentError(f"lam must be a non-negative number, got {lam!r}")
    return float(lam)


def _lr_of(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> float:
    for g in optimizer.param_groups:
        if any(p is param for p in g["params"]):
            return float(g["lr"])
    raise InvalidArgumentError("the optimizer does not hold the regularized parameters; build it from model.parameters()")


class _Regularizer:
    lam: float

    def __call__(self) -> torch.Tensor:
        raise NotImplementedError

    def params(self) -> list[nn.Parameter]:
        raise NotImplementedError

    def prox_(self, lr: float) -> None:
        raise NotImplementedError

    def add_subgradient_(self) -> None:
        """Add d(penalty)/dw to every ``.grad`` (what ``loss + penalty`` would have added)."""
        params = self.params()
        with torch.enable_grad():
            grads = torch.autograd.grad(self(), params, allow_unused=True)
        for p, g in zip(params, grads, strict=True):
            if g is None:
                continue
            p.grad = g.detach().clone() if p.grad is None else p.grad.add_(g)

    def attach(self, optimizer: torch.optim.Optimizer, *, proximal: bool = False) -> RemovableHandle:
        """Regularize every ``optimizer.step()``; ``handle.remove()`` detaches."""
        if proximal:
            first = self.params()[0]

            def post(opt: torch.optim.Optimizer, _args: Any, _kwargs: Any) -> None:
                self.prox_(_lr_of(opt, first))

            return optimizer.register_step_post_hook(post)

        def pre(_opt: torch.optim.Optimizer, _args: Any, _kwargs: Any) -> None:
            self.add_subgradient_()

        return optimizer.register_step_pre_hook(pre)


class BNL1(_Regularizer):
    """``lam * sum |gamma|`` over the scales of the selected BatchNorm layers."""

    def __init__(self, model: nn.Module, lam: float, modules: Iterable[str] | None = None):
        self.lam = _check_lam(lam)
        wanted = None if modules is None else set(modules)
        self.targets: dict[str, nn.Parameter] = {}
        for name, m in model.named_modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and (wanted is None or name in wanted):
                if m.weight is None:
                    raise InvalidArgumentError(f"BatchNorm '{name}' has affine=False: it has no scale to regularize")
                self.targets[name] = m.weight
        if wanted is not None and wanted - set(self.targets):
            raise InvalidArgumentError(f"no BatchNorm layer named {sorted(wanted - set(self.targets))} in the model")
        if not self.targets:
            raise InvalidArgumentError(f"{type(model).__name__} has no BatchNorm layer for bn_l1 to regularize")

    def params(self) -> list[nn.Parameter]:
        return list(self.targets.values())

    def __call__(self) -> torch.Tensor:
        return self.lam * sum((w.abs().sum() for w in self.targets.values()), torch.zeros(()))

    def prox_(self, lr: float) -> None:
        with torch.no_grad():
            for w in self.targets.values():
                w.copy_(w.sign() * (w.abs() - lr * self.lam).clamp_min(0))


@dataclass
class _Slice:
    param: nn.Parameter
    dim: int
    index: torch.Tensor  # (n_units, per_unit) indices along dim


class GroupLasso(_Regularizer):
    """``lam * sum over groups and units of ||all member slices of the unit||_2``."""

    def __init__(self, model: nn.Module, analysis_or_groups: Analysis | Iterable[Group], lam: float,
                 kinds: Iterable[str] | None = None):
        self.lam = _check_lam(lam)
        if isinstance(analysis_or_groups, Analysis):
            groups = list(analysis_or_groups.groups)
        elif isinstance(analysis_or_groups, Iterable):
            groups = list(analysis_or_groups)
        else:
            raise InvalidTypeError(f"group_lasso needs an Analysis or a list of Groups, got {type(analysis_or_groups).__name__}")
        allowed = None if kinds is None else set(kinds)
        params = dict(model.named_parameters(remove_duplicate=False))
        self.groups: list[tuple[Group, list[_Slice]]] = []
        for g in groups:
            if allowed is not None and g.kind not in allowed:
                continue
            slices = [self._slice(g, m, params[m.fqn]) for m in g.members if m.fqn in params and params[m.fqn].requires_grad]
            if slices:
                self.groups.append((g, slices))
        if not self.groups:
            raise InvalidArgumentError("group_lasso found no group with trainable parameters (wrong model or kinds filter?)")

    @staticmethod
    def _slice(g: Group, m: Any, p: nn.Parameter) -> _Slice:
        index = torch.as_tensor(g.unit_index[m.cls], dtype=torch.long, device=p.device)
        if m.dim >= p.ndim or int(index.max()) >= p.shape[m.dim]:
            raise InvalidArgumentError(
                f"group {g.name} does not fit parameter '{m.fqn}' of shape {tuple(p.shape)}; analyze the model "
                "as it is now (after pruning, analyze again)")
        return _Slice(p, m.dim, index)

    def params(self) -> list[nn.Parameter]:
        seen: dict[int, nn.Parameter] = {}
        for _, slices in self.groups:
            for s in slices:
                seen.setdefault(id(s.param), s.param)
        return list(seen.values())

    @staticmethod
    def _sq(slices: list[_Slice]) -> torch.Tensor:
        total = None
        for s in slices:
            other = [d for d in range(s.param.ndim) if d != s.dim]
            per_index = s.param.pow(2).sum(dim=other) if other else s.param.pow(2)
            part = per_index[s.index].sum(dim=1)
            total = part if total is None else total + part
        assert total is not None
        return total

    def unit_norms(self) -> list[torch.Tensor]:
        """Per group, the L2 norm of each unit (detached)."""
        with torch.no_grad():
            return [self._sq(slices).sqrt() for _, slices in self.groups]

    def __call__(self) -> torch.Tensor:
        total = sum(((self._sq(slices) + _EPS).sqrt().sum() for _, slices in self.groups), torch.zeros(()))
        return self.lam * total

    def prox_(self, lr: float) -> None:
        """Block soft-thresholding: each unit shrinks by ``lr * lam`` in norm, or becomes exactly zero."""
        with torch.no_grad():
            for _, slices in self.groups:
                norm = self._sq(slices).sqrt()
                scale = (1 - lr * self.lam / norm.clamp_min(_EPS)).clamp_min(0)
                for s in slices:
                    per_index = torch.ones(s.param.shape[s.dim], dtype=s.param.dtype, device=s.param.device)
                    per_index[s.index] = scale.to(s.param.dtype)[:, None].expand_as(s.index)
                    shape = [1] * s.param.ndim
                    shape[s.dim] = -1
                    s.param.mul_(per_index.reshape(shape))


def bn_l1(model: nn.Module, lam: float, modules: Iterable[str] | None = None) -> BNL1:
    """Network Slimming: ``lam * sum |gamma|`` over BatchNorm scales (all, or the named ``modules``)."""
    return BNL1(model, lam, modules)


def group_lasso(model: nn.Module, analysis_or_groups: Analysis | Iterable[Group], lam: float,
                kinds: Iterable[str] | None = None) -> GroupLasso:
    """Group lasso over secateurs groups (from ``sc.analyze(model, x)``), so whole units go to zero together."""
    return GroupLasso(model, analysis_or_groups, lam, kinds)


__all__ = ["BNL1", "GroupLasso", "bn_l1", "group_lasso"]
