"""What a torch.export program (``file:model.pt2``) cannot do, refused with the reason and the way out.

A program's layers are ATen calls in a graph, not modules. Activation statistics work through taps
(``calibration.program_taps``), but nothing reads the input features (Gram matrices) of layer modules, a
missing bias cannot be added, blocks are not modules that can be removed or run one at a time, and there is
no ``nn.Linear`` to mask to 2:4. Weight, gradient and activation criteria score as on the eager model.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from secateurs.errors import InvalidArgumentError

_WAY_OUT = ("use a weight, gradient or activation criterion (l2, taylor, wanda, activation, fluctuation, ...), or "
            "prune the original nn.Module and export it again")


def refuse_for_program(model: nn.Module, *, drop_layers: Any = None, compensate: Any = None,
                       moments_criterion: str | None = None, sparsity: str | None = None,
                       sequential: bool = False, rotate: bool = False) -> None:
    from secateurs.graph.program import is_program_graph

    if not is_program_graph(model):
        return
    if moments_criterion is not None:
        raise InvalidArgumentError(
            f"importance {moments_criterion!r} reads the input features of nn.Linear/Conv modules (Gram matrices), "
            f"which a torch.export program does not have (its layers are graph ops); {_WAY_OUT}")
    if sequential:
        raise InvalidArgumentError(
            "sequential calibration runs the blocks of an nn.ModuleList one at a time; a torch.export program has no "
            "block modules: pass the batches without sequential=True")
    if compensate is not None:
        raise InvalidArgumentError(
            "compensate= refits nn.Linear/Conv layers from their input statistics; a torch.export program has no such "
            "modules. Prune the original nn.Module with compensate=..., then export it")
    if sparsity is not None:
        raise InvalidArgumentError(
            "2:4 sparsity masks the weights of nn.Linear modules; a torch.export program has none (its layers are "
            "graph ops). Apply the masks to the original nn.Module (prune it, sparsify_2to4, then export)")
    if rotate:
        raise InvalidArgumentError(
            "rotate=True folds RMS norms into nn.Linear modules and rotates their weights; a torch.export program has "
            "neither. Rotate and prune the original nn.Module, then export it")
    if drop_layers:
        raise InvalidArgumentError(
            "drop_layers= (or merge_layers=) removes blocks of an nn.ModuleList; a torch.export program has no block modules. Drop layers "
            "on the original nn.Module, then export it")
