"""Memory-bounded calibration of block-stacked models (decoder LMs): one block's activations at a time.

As SparseGPT and Wanda do: the model runs up to its first block, where a pre-hook records the
block's inputs and stops the forward; then each block runs on the cached hidden states of every
batch, and its outputs become the next block's inputs. At any moment only the hidden states at one
block boundary (inputs and outputs of every calibration batch) are held, never the activations of
all blocks. Finally the model runs once more with every block replaced by a stub that returns the
cached last-block output, so the modules after the blocks (final norm, LM head) are recorded too.
The same hooks as the full collection record the same ``Statistics``, so every criterion reads them
unchanged. Activation statistics only: gradients need a backward pass through the whole model.

Every block receives the keyword arguments (attention mask, position embeddings, ...) that the first
block received; the replay pass checks that the model really passes the same ones to every block.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from secateurs.calibration.data import CalibrationData, progress
from secateurs.calibration.hooks import all_reduce_, channel_hooks
from secateurs.calibration.residency import Residency
from secateurs.calibration.stats import Statistics
from secateurs.errors import InvalidArgumentError
from secateurs.graph.capture import eval_mode, normalize_inputs


@dataclass(frozen=True)
class BlockStep:
    """What was held after running one block on every batch (reported through ``trace``)."""

    block: int
    held_tensors: int  # hidden-state tensors alive: the block's inputs and outputs over all batches
    held_elements: int


class _Captured(Exception):
    """Raised by the pre-hook of the first block to stop the forward once its inputs are recorded."""


@dataclass
class BlockCall:
    """The arguments one block was called with for one batch; the hidden states are the first tensor."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def hidden(self) -> torch.Tensor:
        h = self.args[0] if self.args else self.kwargs.get("hidden_states")
        if not isinstance(h, torch.Tensor):
            raise InvalidArgumentError(
                f"sequential calibration expects each block to take the hidden states as its first argument or as "
                f"hidden_states=, got {type(h).__name__}; use CalibrationData(..., sequential=False)")
        return h

    def with_hidden(self, h: torch.Tensor) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if self.args:
            return (h, *self.args[1:]), self.kwargs
        return self.args, {**self.kwargs, "hidden_states": h}


def find_blocks(model: nn.Module, path: str | None = None) -> tuple[str, nn.ModuleList | nn.Sequential]:
    """The stack of blocks: the module at ``path``, or the one ``secateurs.depth`` finds (a model's depth adapter,
    else its longest list of same-type blocks)."""
    if path is not None:
        try:
            found = model.get_submodule(path)
        except AttributeError as exc:
            raise InvalidArgumentError(f"blocks={path!r} names no submodule of {type(model).__name__}") from exc
        if not isinstance(found, (nn.ModuleList, nn.Sequential)) or len(found) == 0:
            raise InvalidArgumentError(
                f"blocks={path!r} is a {type(found).__name__}; name a non-empty nn.ModuleList of blocks (e.g. 'model.layers')")
        return path, found
    from secateurs.errors import PlanError
    from secateurs.graph.blocks import container
    from secateurs.graph.blocks import (
        find_blocks as locate_blocks,  # the one block finder (layer dropping uses it)
    )

    try:
        path = locate_blocks(model)
    except PlanError as exc:
        raise InvalidArgumentError(f"{exc}; for sequential calibration you can instead name the list with "
                                   "CalibrationData(..., blocks='path.to.layers'), or use sequential=False") from exc
    return path, container(model, path)


class _Replay(nn.Module):
    """Stands in for a block in the tail pass: returns the cached last-block output of the current batch."""

    def __init__(self, index: int, outputs: list[Any], state: dict[str, Any]) -> None:
        super().__init__()
        self.index, self.outputs, self.state = index, outputs, state

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        seen = self.state["kwargs"]
        if self.index == 0:
            seen.clear()
        seen.append(kwargs)
        if self.state.get("stop_after") == self.index:
            raise _Captured  # the keyword arguments are checked; the modules after the blocks are not needed
        return self.outputs[self.state["batch"]]


@contextlib.contextmanager
def _swapped(blocks: nn.ModuleList | nn.Sequential, stubs: list[nn.Module]) -> Iterator[None]:
    originals = list(blocks)
    try:
        for i, s in enumerate(stubs):
            blocks[i] = s
        yield
    finally:
        for i, m in enumerate(originals):
            blocks[i] = m


#: installs recording hooks: ``hooks(model, stats, blocks)``
Hooks = Callable[[nn.Module, Statistics, list[nn.Module]], AbstractContextManager[None]]
#: the tables of ``Statistics`` keyed by module path (recorded by forward hooks)
PATH_TABLES = ("inputs", "outputs", "moments")


def _tables(stats: Statistics) -> list[dict[str, Any]]:
    return [t for name in PATH_TABLES if isinstance(t := getattr(stats, name, None), dict)]


def collect_sequential(model: nn.Module, data: CalibrationData, *, hooks: Hooks | None = None,
                       trace: list[BlockStep] | None = None, residency: Residency | None = None,
                       needed: Collection[str] | None = None) -> Statistics:
    """Activation statistics equal to ``collect(model, data)``, holding one block boundary at a time.

    ``hooks(model, stats, blocks)`` installs the recording hooks (by default the per-channel ones of
    ``collect``); hooks that keep per-forward state should reset it when a block starts.
    ``trace``, when given a list, receives a ``BlockStep`` after each block (what was held then).
    ``residency`` says which weights to load for each step (``data.residency``; all are in memory by default).
    ``needed``: the module paths whose statistics will be read; the modules after the blocks run in the tail pass
    only when one of them is neither before nor inside the blocks (by default they always run).
    """
    install = hooks or (lambda m, s, b: channel_hooks(m, s))
    res = residency or data.residency or Residency()
    path, blocks = find_blocks(model, data.blocks)
    stats = Statistics()
    with eval_mode(model), torch.no_grad():
        with install(model, stats, list(blocks)):
            with res.head():
                inputs, calls = _capture(model, data, blocks[0])
            head = {key for table in _tables(stats) for key in table}
            outputs = _run_blocks(blocks, calls, trace, res, data.progress)
        tail = Statistics()
        if needed is None or any(p not in head and not p.startswith(path + ".") for p in needed):
            with install(model, tail, list(blocks)), res.tail():
                _replay_tail(model, path, blocks, inputs, outputs)
        else:  # no statistics wanted after the blocks: only check the blocks' keyword arguments
            with res.head():
                _replay_tail(model, path, blocks, inputs, outputs, check_only=True)
    prefix = path + "."
    for mine, theirs in zip(_tables(stats), _tables(tail), strict=True):
        for key, value in theirs.items():
            if key not in head and not key.startswith(prefix):
                mine[key] = value
    stats.n_batches = len(inputs)
    all_reduce_(stats)
    return stats


def _capture(model: nn.Module, data: CalibrationData, first: nn.Module) -> tuple[list[Any], list[BlockCall]]:
    """Run every batch up to the first block; keep the model inputs and the block's arguments."""
    inputs: list[Any] = []
    calls: list[BlockCall] = []

    def stop(_: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        calls.append(BlockCall(args, dict(kwargs)))
        raise _Captured

    total = data.max_batches
    if total is None and hasattr(data.batches, "__len__"):
        total = len(data.batches)  # type: ignore[arg-type]
    handle = first.register_forward_pre_hook(stop, with_kwargs=True)
    try:
        for i, batch in enumerate(progress(data.batches, data.progress, total)):
            if data.max_batches is not None and i >= data.max_batches:
                break
            args, kwargs = normalize_inputs(data.inputs(batch) if data.inputs else batch)
            try:
                model(*args, **kwargs)
            except _Captured:
                inputs.append((args, kwargs))
                continue
            except (TypeError, RuntimeError, ValueError) as exc:
                raise InvalidArgumentError(
                    f"calibration batch {i} does not run through {type(model).__name__}: {type(exc).__name__}: "
                    f"{str(exc).splitlines()[0] if str(exc) else ''}. Each batch is passed like example_inputs"
                ) from exc
            raise InvalidArgumentError(
                f"calibration batch {i} ran through {type(model).__name__} without calling its first block; "
                "sequential calibration needs every batch to pass through the blocks (or use sequential=False)")
    finally:
        handle.remove()
    if not calls:
        raise InvalidArgumentError("calibration yielded no batches; pass at least one batch shaped like example_inputs")
    return inputs, calls


def _run_blocks(blocks: nn.ModuleList | nn.Sequential, calls: list[BlockCall],
                trace: list[BlockStep] | None, res: Residency, bar: bool | None) -> list[Any]:
    """Feed the cached hidden states through one block at a time; the raw outputs of the last block."""
    hidden = [c.hidden() for c in calls]
    for c in calls:  # the hidden states live in ``hidden`` only, so each is freed once consumed
        c.args, c.kwargs = c.with_hidden(torch.empty(0))
    raw: list[Any] = []
    for b, block in enumerate(progress(blocks, bar, len(blocks), "calibration blocks")):
        raw = []
        with res.block(b):
            for k, c in enumerate(calls):
                args, kwargs = c.with_hidden(hidden[k])
                raw.append(block(*args, **kwargs))
        outs = [first_tensor(o, b) for o in raw]
        if trace is not None:
            alive = {id(t): t for t in hidden + outs}
            trace.append(BlockStep(b, len(alive), sum(t.numel() for t in alive.values())))
        hidden = outs
        if b < len(blocks) - 1:
            raw = []
    return raw


def first_tensor(out: Any, b: int) -> torch.Tensor:
    h = out[0] if isinstance(out, (tuple, list)) else getattr(out, "last_hidden_state", out)
    if not isinstance(h, torch.Tensor):
        raise InvalidArgumentError(f"block {b} returned {type(out).__name__} without a hidden-state tensor first; "
                                   "use CalibrationData(..., sequential=False)")
    return h


def _replay_tail(model: nn.Module, path: str, blocks: nn.ModuleList | nn.Sequential, inputs: list[Any],
                 outputs: list[Any], check_only: bool = False) -> None:
    """Run the modules after the blocks on the cached last-block outputs; check every block got block 0's kwargs
    (``check_only``: stop after the last block, the modules after it are not run)."""
    state: dict[str, Any] = {"batch": 0, "kwargs": [], "stop_after": len(blocks) - 1 if check_only else None}
    stubs: list[nn.Module] = [_Replay(i, outputs, state) for i in range(len(blocks))]
    with _swapped(blocks, stubs):
        for k, (args, kwargs) in enumerate(inputs):
            state["batch"] = k
            with contextlib.suppress(_Captured):
                model(*args, **kwargs)
            seen = state["kwargs"]
            for i, kw in enumerate(seen[1:], start=1):
                if not _same(seen[0], kw):
                    raise InvalidArgumentError(
                        f"{path}.{i} receives different keyword arguments than {path}.0 (e.g. a per-layer attention "
                        "mask); sequential calibration reuses the first block's, so its statistics would be wrong. "
                        "Use CalibrationData(..., sequential=False)")


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (int, float, str, bool, type(None))):
        return a == b
    return False


def block_inputs(model: nn.Module, data: CalibrationData) -> tuple[list[Any], list[BlockCall]]:
    """Run every batch up to the first block: (the model inputs of each batch, the first block's call)."""
    _, blocks = find_blocks(model, data.blocks)
    with eval_mode(model), torch.no_grad():
        return _capture(model, data, blocks[0])


def outputs_after_blocks(model: nn.Module, inputs: list[Any], last: list[Any], path: str | None = None) -> list[Any]:
    """The model's outputs when every block returns ``last[k]`` for batch ``k``: what the modules after the
    blocks (final norm, head) make of given last-block outputs."""
    _, blocks = find_blocks(model, path)
    state: dict[str, Any] = {"batch": 0, "kwargs": []}
    stubs: list[nn.Module] = [_Replay(i, last, state) for i in range(len(blocks))]
    out = []
    with eval_mode(model), torch.no_grad(), _swapped(blocks, stubs):
        for k, (args, kwargs) in enumerate(inputs):
            state["batch"] = k
            out.append(model(*args, **kwargs))
    return out
