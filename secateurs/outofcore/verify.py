"""Each part of the pruned checkpoint checked against the same part of the unpruned model, removed units zeroed.

The example inputs run part by part: the embeddings give the first block's inputs, each block turns the hidden
states of the masked unpruned chain into the next ones, the modules after the blocks give the model outputs.
At every part the pruned part gets the same hidden states (cut to the kept hidden channels) and its output is
compared with the masked original's, as ``sc.verify`` compares whole models: relative max error within the
dtype's tolerance where the plan is exact, shapes and a clean run where it is not (a pruned hidden size under
RMSNorm). Only the part being checked has weights in memory (the caller loads and frees them).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from secateurs.calibration.data import CalibrationData
from secateurs.calibration.sequential import BlockCall, block_inputs, first_tensor, outputs_after_blocks
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


class PartChecker:
    """``original(part)`` runs the loaded original part masked and keeps its outputs; ``pruned(part)`` runs the
    loaded pruned part on the same hidden states and compares. Parts go in order: before blocks, each block,
    after blocks (for which the tensors before the blocks must be loaded too)."""

    def __init__(self, original: nn.Module, pruned: nn.Module, plan: Plan, example_inputs: ExampleInputs,
                 tolerance: float | None = None) -> None:
        self.m, self.p, self.plan = original, pruned, plan
        self.data = CalibrationData([example_inputs], sequential=True)
        self.tolerance = tolerance
        self.hidden_keep = _hidden_keep(original, plan)
        self._h: list[torch.Tensor] = []  # hidden states of the masked original chain
        self._pending: list[Any] = []  # the original part's outputs, waiting for the pruned part
        self._calls: tuple[list[BlockCall], list[BlockCall]] = ([], [])
        self._inputs: tuple[list[Any], list[Any]] = ([], [])
        self._raw: tuple[list[Any], list[Any]] = ([], [])  # last raw block outputs (their structure, for replay)

    def _masked(self) -> Any:
        loaded = {k: v for k, v in self.plan.keep.items() if not _get(self.m, k).is_meta}
        return masked(self.m, replace(self.plan, keep=loaded))

    def original(self, block: int | None, after: bool = False) -> None:
        with self._masked(), eval_mode(self.m), torch.no_grad():
            if block is None and not after:
                inputs, calls = block_inputs(self.m, self.data)
                self._inputs, self._calls = (inputs, self._inputs[1]), (calls, self._calls[1])
                self._h = [c.hidden() for c in calls]
                self._pending = list(self._h)
            elif block is not None:
                blocks = _blocks(self.m)
                raw = [blocks[block](*c.with_hidden(h)[0], **c.with_hidden(h)[1]) for c, h in zip(self._calls[0], self._h, strict=True)]
                self._raw = (raw, self._raw[1])
                self._pending = [first_tensor(r, block) for r in raw]
            else:
                last = [_with_first(r, h) for r, h in zip(self._raw[0], self._h, strict=True)]
                self._pending = [t for out in outputs_after_blocks(self.m, self._inputs[0], last) for t in _tensors(out)]

    def pruned(self, name: str, block: int | None, after: bool = False) -> PartCheck:
        with eval_mode(self.p), torch.no_grad():
            try:
                got = self._run_pruned(block, after)
            except Exception as exc:
                raise VerificationError(f"pruned {name} does not run: {type(exc).__name__}: {exc}") from exc
        want = self._pending if after else [self._cut(t) for t in self._pending]
        if block is not None:
            self._h = self._pending  # the next block reads the masked original's output
        return self._compare(name, want, got)

    def _run_pruned(self, block: int | None, after: bool) -> list[torch.Tensor]:
        if block is None and not after:
            inputs, calls = block_inputs(self.p, self.data)
            self._inputs, self._calls = (self._inputs[0], inputs), (self._calls[0], calls)
            return [c.hidden() for c in calls]
        if block is not None:
            blocks = _blocks(self.p)
            cut = [self._cut(h) for h in self._h]
            raw = [blocks[block](*c.with_hidden(h)[0], **c.with_hidden(h)[1]) for c, h in zip(self._calls[1], cut, strict=True)]
            self._raw = (self._raw[0], raw)
            return [first_tensor(r, block) for r in raw]
        last = [_with_first(r, self._cut(h)) for r, h in zip(self._raw[1], self._h, strict=True)]
        return [t for out in outputs_after_blocks(self.p, self._inputs[1], last) for t in _tensors(out)]

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
                err = (a.float() - b.float()).abs().max().item()
                rel = max(rel, err / max(a.float().abs().max().item(), 1e-6))
        ok = rel <= tol
        if not ok:
            raise VerificationError(f"pruned {name} differs from the masked original: relative error {rel:.3g} > "
                                    f"tolerance {tol:g}")
        return PartCheck(name, "exact", rel, tol, True)


def _get(model: nn.Module, fqn: str) -> torch.Tensor:
    path, _, attr = fqn.rpartition(".")
    module = model.get_submodule(path) if path else model
    t = module._parameters.get(attr)
    return t if t is not None else module._buffers[attr]  # type: ignore[return-value]


def _blocks(model: nn.Module) -> Any:
    from secateurs.calibration.sequential import find_blocks

    return find_blocks(model)[1]


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
