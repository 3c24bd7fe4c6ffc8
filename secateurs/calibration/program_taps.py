"""Activation statistics of a torch.export program: its layer ops fire the forward hooks of their weights' modules.

In a program (``file:model.pt2``) a Linear is ``aten.linear(x, get_attr("fc1.weight"), ...)``; the module
``fc1`` only holds the tensors and is never called, so the hooks calibration registers on it never run.
:func:`mark_layouts_` tells ``layout_for`` which layer each such holder stands for (from the op that reads
its ``weight``), and :func:`tapped` inserts, after every layer op, a call that runs the holder's forward hooks
with the op's input and output, as a module call would. The graph is restored afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from secateurs.calibration.layouts import LAYOUT_ATTR
from secateurs.graph.capture import target_name
from secateurs.graph.ops import LayerRead, op_info

_TAP = "_secateurs_tap"


def layer_nodes(gm: torch.fx.GraphModule) -> list[tuple[torch.fx.Node, str, LayerRead]]:
    """(node, path of the module holding its ``weight``, how it reads) for every layer op of the program."""
    out = []
    for node in gm.graph.nodes:
        info = op_info(target_name(node.target)) if node.op == "call_function" else None
        op = info.layer if info is not None else None
        if op is None or len(node.args) <= max(op.weight_arg, op.input_arg):
            continue
        weight = node.args[op.weight_arg]
        if isinstance(weight, torch.fx.Node) and weight.op == "get_attr" and str(weight.target).split(".")[-1] == "weight":
            out.append((node, str(weight.target).rpartition(".")[0], op))
    return out


class _Tap(nn.Module):
    """Runs the forward hooks of the module at ``path`` of ``root`` with one layer op's input and output."""

    _root: nn.Module

    def __init__(self, root: nn.Module):
        super().__init__()
        object.__setattr__(self, "_root", root)  # not a child: no module cycle

    def forward(self, path: str, x: Any, y: Any) -> None:
        holder = self._root.get_submodule(path)
        for hook in list(holder._forward_hooks.values()):
            hook(holder, (x,), y)


def mark_layouts_(gm: torch.fx.GraphModule) -> int:
    """Record on each weight holder (a plain module of the program) the layout of the layer op reading its
    weight, so ``layout_for`` and the criteria treat it as that layer; returns how many holders are marked."""
    n = 0
    for _, path, op in layer_nodes(gm):
        holder = gm.get_submodule(path)
        if path and type(holder) is nn.Module:
            object.__setattr__(holder, LAYOUT_ATTR, op.layout)
            n += 1
    return n


@contextlib.contextmanager
def tapped(gm: torch.fx.GraphModule) -> Iterator[None]:
    """While active, every layer op of ``gm`` runs its weight holder's forward hooks (see the module doc)."""
    taps = []
    gm.add_module(_TAP, _Tap(gm))
    try:
        for node, path, op in layer_nodes(gm):
            if type(gm.get_submodule(path)) is not nn.Module:
                continue  # a real layer module (not a program's holder) has hooks of its own
            with gm.graph.inserting_after(node):
                taps.append(gm.graph.call_module(_TAP, (path, node.args[op.input_arg], node)))
        gm.recompile()
        yield
    finally:
        for tap in reversed(taps):
            gm.graph.erase_node(tap)
        delattr(gm, _TAP)
        gm.recompile()
