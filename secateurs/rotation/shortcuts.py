"""SliceGPT's shortcut matrices: with one basis per stretch of the residual stream (``rotate_per_layer=True``), the
residual that skips a sublayer must change basis on the way, ``x -> x @ Q_k^T Q_{k+1}``.

A :class:`Shortcut` holds that matrix as a parameter of the block (so it is saved, and pruning the hidden size
slices both its dims: the capture couples them to the stream). Two forward hooks do the arithmetic without changing
the block's code: a pre-hook on the norm that reads stretch ``k`` remembers its input ``x`` (the residual), and a
hook on the Linear that writes stretch ``k + 1`` (``o_proj``, ``down_proj``) returns ``out + x @ S - x``, so the
block's own ``residual + out`` gives ``x @ S + out``. Hooks are bound methods of the shortcut, so a deep copy of
the model carries working copies. A model saved with ``secateurs.save`` records the sites in its plan and
``secateurs.load`` recreates them (``add_recorded_shortcuts_``); ``save_pretrained`` cannot express them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from secateurs.errors import FileFormatError
from secateurs.plans import Plan


class Shortcut(nn.Module):
    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight)
        self._x: torch.Tensor | None = None

    def remember(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        x = args[0] if args else kwargs.get("hidden_states")
        self._x = x if isinstance(x, torch.Tensor) else None

    def add(self, module: nn.Module, args: Any, out: torch.Tensor) -> torch.Tensor:
        x, self._x = self._x, None
        if x is None:
            raise RuntimeError("rotation shortcut: the writer ran before the norm that reads its residual")
        return out + x @ self.weight.to(x.dtype) - x


@dataclass(frozen=True)
class Site:
    """Where one shortcut lives: the block, its attribute name, the reading norm and the writing Linear."""

    block: str
    name: str
    reader: str
    writer: str

    def to_dict(self) -> dict[str, str]:
        return {"block": self.block, "name": self.name, "reader": self.reader, "writer": self.writer}


def install(model: nn.Module, site: Site, weight: torch.Tensor) -> list[Any]:
    """Add the shortcut module and its two hooks; the hook handles (to remove them)."""
    shortcut = Shortcut(weight)
    model.get_submodule(site.block).add_module(site.name, shortcut)
    return [model.get_submodule(site.reader).register_forward_pre_hook(shortcut.remember, with_kwargs=True),
            model.get_submodule(site.writer).register_forward_hook(shortcut.add)]


def uninstall(model: nn.Module, site: Site, handles: list[Any]) -> None:
    for h in handles:
        h.remove()
    block = model.get_submodule(site.block)
    if site.name in block._modules:
        del block._modules[site.name]


def add_recorded_shortcuts_(model: nn.Module, plan: Plan) -> None:
    """On a fresh unpruned model, before the plan is applied: the shortcuts a per-layer rotation recorded (identity
    weights, full width), so the model has the tensors the plan slices and the saved weights fill."""
    rec = plan.settings.get("rotation")
    if not isinstance(rec, dict) or not rec.get("per_layer"):
        return
    width = int(rec["width"])
    for entry in rec.get("shortcuts") or []:
        try:
            site = Site(**entry)
            install(model, site, torch.eye(width, dtype=_dtype(model)))
        except (TypeError, AttributeError) as exc:
            raise FileFormatError(f"the plan records a rotation shortcut {entry!r} that this model cannot hold: {exc}"
                                  ) from exc


def _dtype(model: nn.Module) -> torch.dtype:
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
