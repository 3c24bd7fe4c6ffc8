"""Each part of the pruned checkpoint checked against the same part of the unpruned model, removed units zeroed.

The example inputs run part by part: the embeddings give the first block's inputs, each block turns the hidden
states of the masked unpruned chain into the next ones, the modules after the blocks give the model outputs.
At every part the pruned part gets the same hidden states (cut to the kept hidden channels) and its output is
compared with the masked original's, as ``sc.verify`` compares whole models: relative max error within the
dtype's tolerance where the plan is exact, shapes and a clean run where it is not (a pruned hidden size under
RMSNorm). Only the part being checked has weights in memory (the caller loads and frees them).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from secateurs.calibration.data import CalibrationData
from secateurs.calibration.sequential import (
    BlockCall,
    block_inputs,
    find_blocks,
    first_tensor,
    outputs_after_blocks,
)
from secateurs.errors import VerificationError
from secateurs.graph.capture import ExampleInputs, eval_mode
from secateurs.plans import Plan
from secateurs.verification.oracle import default_tolerance, masked


@dataclass
class PartCheck:
    part: str
    mode: str  # "exact" (compared with the masked original) or "structural" (runs, shapes)
    rel_error: float | None
    tolerance: float
    ok: bool

    def to_dict(self) -> dict[str, Any]:
        return {"part": self.part, "mode": self.mode, "rel_error": self.rel_error, "tolerance": self.tolerance,
                "ok": self.ok}


@dataclass
class _Chain:
    """One model run part by part: its inputs, the first block's calls, the last raw block outputs."""

    model: nn.Module
    inputs: list[Any] = field(default_factory=list)
    calls: list[BlockCall] = field(default_factory=list)
    raw: list[Any] = field(default_factory=list)

    def step(self, data: CalibrationData, block: int | None, hidden: list[torch.Tensor]) -> list[torch.Tensor]:
        """Run one part: before the blocks (``block`` None, ``hidden`` empty), block ``block`` on ``hidden``, or
        after the blocks (``block`` None) with ``hidden`` as the last block's outputs."""
        with eval_mode(self.model), torch.no_grad():
            if block is None and not hidden:
                self.inputs, self.calls = block_inputs(self.model, data)
                return [c.hidden() for c in self.calls]
            if block is not None:
                layer = find_blocks(self.model)[1][block]
                self.raw = [layer(*a, **k) for a, k in (c.with_hidden(h) for c, h in zip(self.calls, hidden, strict=True))]
                return [first_tensor(r, block) for r in self.raw]
            last = [_with_first(r, h) for r, h in zip(self.raw, hidden, strict=True)]
            return [t for out in outputs_after_blocks(self.model, self.inputs, last) for t in _tensors(out)]


class PartChecker:
    """``original(block)`` runs the loaded original part masked and keeps its outputs; ``pruned(name, block)``
    runs the loaded pruned part on the same hidden states and compares. ``block`` is None before the blocks;
    ``after=True`` marks the part after them (its step needs the tensors before the blocks loaded too)."""

    def __init__(self, original: nn.Module, pruned: nn.Module, plan: Plan, example_inputs: ExampleInputs,
                 tolerance: float | None = None) -> None:
        self.m, self.p = _Chain(original), _Chain(pruned)
        self.plan, self.tolerance = plan, tolerance
        self.data = CalibrationData([example_inputs], sequential=True)
        self.hidden_keep = _hidden_keep(original, plan)
        self._h: list[torch.Tensor] = []  # hidden states of the masked original chain
        self._pending: list[torch.Tensor] = []  # the original part's outputs, waiting for the pruned part

    def original(self, block: int | None, after: bool = False) -> None:
        loaded = {k: v for k, v in self.plan.keep.items() if not _get(self.m.model, k).is_meta}
        with masked(self.m.model, replace(self.plan, keep=loaded)):
            self._pending = self.m.step(self.data, block, self._h if block is not None or after else [])
        if block is None and not after:
            self._h = self._pending

    def pruned(self, name: str, block: int | None, after: bool = False) -> PartCheck:
        hidden = [self._cut(h) for h in self._h] if block is not None or after else []
        try:
            got = self.p.step(self.data, block, hidden)
        except Exception as exc:
            raise VerificationError(f"pruned {name} does not run: {type(exc).__name__}: {exc}") from exc
        want = self._pending if after else [self._cut(t) for t in self._pending]
        if block is not None:
            self._h = self._pending  # the next block reads the masked original's output
        return self._compare(name, want, got)

    def _cut(self, h: torch.Tensor) -> torch.Tensor:
        return h if self.hidden_keep is None else h.index_select(-1, self.hidden_keep)

    def _compare(self, name: str, want: list[torch.Tensor], got: list[torch.Tensor]) -> PartCheck:
        tol = default_tolerance(want) if self.tolerance is None else self.tolerance
        if len(want) != len(got) or any(a.shape != b.shape for a, b in zip(want, got, strict=False)):
            raise VerificationError(f"pruned {name} gives shapes {[tuple(t.shape) for t in got]}, the masked original "
                                    f"{[tuple(t.shape) for t in want]}")
        if not self.plan.exact:
            return PartCheck(name, "structural", None, tol, True)
        rel = 0.0
        for a, b in zip(want, got, strict=True):
            if a.is_floating_point() and a.numel():
                rel = max(rel, _rel_error(a, b))
        if not rel <= tol:  # NaN too
            raise VerificationError(f"pruned {name} differs from the masked original: relative error {rel:.3g} > "
                                    f"tolerance {tol:g}")
        return PartCheck(name, "exact", rel, tol, True)


def _rel_error(a: torch.Tensor, b: torch.Tensor, chunk: int = 2**22) -> float:
    """max |a - b| / max |a| in float32, a slice at a time (the logits of a large vocabulary are big)."""
    fa, fb = a.reshape(-1), b.reshape(-1)
    err = scale = 0.0
    for i in range(0, fa.numel(), chunk):
        x, y = fa[i:i + chunk].float(), fb[i:i + chunk].float()
        err = max(err, (x - y).abs().max().item())
        scale = max(scale, x.abs().max().item())
    return err / max(scale, 1e-6)


def _get(model: nn.Module, fqn: str) -> torch.Tensor:
    path, _, attr = fqn.rpartition(".")
    module = model.get_submodule(path) if path else model
    t = module._parameters.get(attr)
    return t if t is not None else module._buffers[attr]  # type: ignore[return-value]


def _hidden_keep(model: nn.Module, plan: Plan) -> torch.Tensor | None:
    """Indices of the hidden channels kept: the plan's cut of the input embeddings' width (None: all kept)."""
    get = getattr(model, "get_input_embeddings", None)
    emb = get() if callable(get) else None
    name = next((n for n, m in model.named_modules() if m is emb), None) if emb is not None else None
    keep = plan.keep.get(f"{name}.weight", {}).get(1) if name is not None else None
    return None if keep is None else torch.as_tensor(keep, dtype=torch.long)


def _with_first(raw: Any, h: torch.Tensor) -> Any:
    if isinstance(raw, torch.Tensor):
        return h
    if isinstance(raw, (tuple, list)):
        return type(raw)([h, *raw[1:]])
    raise VerificationError(f"cannot replay a block output of type {type(raw).__name__}")


def _tensors(out: Any) -> list[torch.Tensor]:
    if isinstance(out, dict) and not tree_leaves(out):
        out = list(out.values())
    return [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
