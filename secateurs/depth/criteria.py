"""Layer importance from calibration batches: block influence (ShortGPT) and angular distance (Gromov et al.).

Both read the hidden state entering each block and the one leaving it, through forward hooks, one
batch at a time: only the current batch's states of at most ``n + 1`` blocks are held, never those of
every layer. Tokens are averaged (weighted by ``attention_mask`` when a batch has one).

* ``block_influence`` (Men et al., 2024, "ShortGPT"): ``BI_l = 1 - cos(x_l, x_{l+1})`` averaged over
  tokens; a low score means the block barely changes its input. The ``n`` lowest are dropped.
* ``angular`` (Gromov et al., 2024, "The Unreasonable Ineffectiveness of the Deeper Layers"):
  ``d(l, n) = arccos(cos(x_l, x_{l+n})) / pi`` between the input of block ``l`` and the input of
  block ``l + n`` (the output of the last block for ``l + n = L``); the ``n`` consecutive blocks from
  the ``l`` with the smallest distance are dropped. The paper reads the last token; this averages
  over every token, as block influence does.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from secateurs.calibration.data import CalibrationData, as_calibration, forward_batch, progress
from secateurs.errors import InvalidArgumentError, PlanError
from secateurs.graph.capture import eval_mode
from secateurs.registry import Registry


@dataclass
class LayerScores:
    """What a layer criterion decided: per-block (or per-window) scores and the blocks to drop."""

    scores: list[float]
    drop: list[int]
    batches: int


@dataclass
class _Sums:
    total: np.ndarray
    weight: np.ndarray


Selector = Callable[[nn.Module, list[nn.Module], CalibrationData, int], LayerScores]
LAYER_CRITERIA: Registry[Selector] = Registry("layer_importance")
register_layer_criterion = LAYER_CRITERIA.register


def get_layer_criterion(name: str) -> Selector:
    return LAYER_CRITERIA.get(name)


def hidden_in(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor | None:
    x = args[0] if args else kwargs.get("hidden_states", next(iter(kwargs.values()), None))
    return x if isinstance(x, torch.Tensor) else None


def first_tensor(out: Any) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return None


def _token_weights(batch: Any, shape: torch.Size) -> torch.Tensor | None:
    mask = batch.get("attention_mask") if isinstance(batch, dict) else None
    if isinstance(mask, torch.Tensor) and tuple(mask.shape) == tuple(shape):
        return mask.to(torch.float64)
    return None


def _mean_over_tokens(values: torch.Tensor, weights: torch.Tensor | None) -> tuple[float, float]:
    values = values.to(torch.float64)
    if weights is None:
        return float(values.sum()), float(values.numel())
    weights = weights.to(values.device)
    return float((values * weights).sum()), float(weights.sum())


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(a.to(torch.float64), b.to(torch.float64), dim=-1, eps=1e-12).clamp(-1.0, 1.0)


@contextlib.contextmanager
def _block_hooks(blocks: list[nn.Module], record: Callable[[int, torch.Tensor, torch.Tensor], None]) -> Iterator[None]:
    handles = []
    for i, block in enumerate(blocks):
        def hook(mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any, i: int = i) -> None:
            x, y = hidden_in(args, kwargs), first_tensor(out)
            if x is None or y is None or x.shape != y.shape:
                raise PlanError(
                    f"block {i} ({type(mod).__name__}) maps {None if x is None else tuple(x.shape)} to "
                    f"{None if y is None else tuple(y.shape)}: layer dropping needs residual blocks whose first output "
                    "has the shape of their first input")
            record(i, x.detach(), y.detach())

        handles.append(block.register_forward_hook(hook, with_kwargs=True))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _run(model: nn.Module, data: CalibrationData, blocks: list[nn.Module],
         record: Callable[[Any, int, torch.Tensor, torch.Tensor], None]) -> int:
    """Forward every calibration batch; ``record(batch, i, x_in, x_out)`` for block ``i``. Returns the batch count."""
    n = 0
    total = data.max_batches if data.max_batches is not None else (
        len(data.batches) if hasattr(data.batches, "__len__") else None)  # type: ignore[arg-type]
    current: list[Any] = [None]
    calls = [0] * len(blocks)
    with eval_mode(model), torch.no_grad():
        def on_block(i: int, x: torch.Tensor, y: torch.Tensor) -> None:
            calls[i] += 1
            record(current[0], i, x, y)

        with _block_hooks(blocks, on_block):
            for k, batch in enumerate(progress(data.batches, data.progress, total)):
                if data.max_batches is not None and k >= data.max_batches:
                    break
                current[0] = data.inputs(batch) if data.inputs else batch
                before = list(calls)
                forward_batch(model, data, batch, k)
                if any(c - b != 1 for c, b in zip(calls, before, strict=True)):
                    raise PlanError(f"calibration batch {k} ran the blocks {[c - b for c, b in zip(calls, before, strict=True)]} "
                                    "times each; layer dropping needs every block to run exactly once per forward")
                n += 1
    if n == 0:
        raise InvalidArgumentError("calibration yielded no batches; pass at least one batch shaped like example_inputs")
    return n


@register_layer_criterion("block_influence")
def block_influence(model: nn.Module, blocks: list[nn.Module], data: CalibrationData, n_drop: int) -> LayerScores:
    sums = _Sums(np.zeros(len(blocks)), np.zeros(len(blocks)))

    def record(batch: Any, i: int, x: torch.Tensor, y: torch.Tensor) -> None:
        total, weight = _mean_over_tokens(1.0 - _cosine(x, y), _token_weights(batch, x.shape[:-1]))
        sums.total[i] += total
        sums.weight[i] += weight

    batches = _run(model, data, blocks, record)
    scores = sums.total / np.maximum(sums.weight, 1e-12)
    order = np.lexsort((np.arange(len(scores)), scores))  # ties: the earlier block first
    return LayerScores([float(s) for s in scores], sorted(int(i) for i in order[:n_drop]), batches)


@register_layer_criterion("angular")
def angular(model: nn.Module, blocks: list[nn.Module], data: CalibrationData, n_drop: int) -> LayerScores:
    n_windows = len(blocks) - n_drop + 1
    sums = _Sums(np.zeros(n_windows), np.zeros(n_windows))
    held: dict[int, torch.Tensor] = {}  # inputs of the last n_drop blocks of the current batch

    def record(batch: Any, i: int, x: torch.Tensor, y: torch.Tensor) -> None:
        held[i] = x
        start = i + 1 - n_drop  # y is the input of block i + 1 = start + n_drop
        if start >= 0:
            a = held.pop(start)
            dist = torch.arccos(_cosine(a, y)) / math.pi
            total, weight = _mean_over_tokens(dist, _token_weights(batch, a.shape[:-1]))
            sums.total[start] += total
            sums.weight[start] += weight

    batches = _run(model, data, blocks, record)
    held.clear()
    scores = sums.total / np.maximum(sums.weight, 1e-12)
    best = int(np.argmin(scores))  # the first of equal minima
    return LayerScores([float(s) for s in scores], list(range(best, best + n_drop)), batches)


def score_layers(model: nn.Module, blocks: list[nn.Module], calibration: Any, n_drop: int, name: str) -> LayerScores:
    return get_layer_criterion(name)(model, blocks, as_calibration(calibration), n_drop)
