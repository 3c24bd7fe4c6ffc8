"""The principal axes of the residual stream where it is read: the inputs of its RMS norms over calibration data.

Every token's stream vector entering a norm is scaled to unit length before it is added to the second-moment
matrix, since a norm only passes the direction on: what slicing a dimension costs at that read is the fraction of
the vector's energy it held. The sum runs over every norm (each block's two reads and the final norm), so one
orthogonal Q serves the whole stream; padding tokens (``attention_mask`` 0) are left out.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from secateurs.calibration.data import as_calibration, forward_batch
from secateurs.depth.criteria import _token_weights, hidden_in
from secateurs.errors import InvalidArgumentError
from secateurs.graph.capture import eval_mode


@dataclass
class Axes:
    """Q (D x D, float64, columns = principal axes by decreasing eigenvalue) and the eigenvalues."""

    q: torch.Tensor
    eigenvalues: torch.Tensor
    tokens: int
    batches: int


@contextlib.contextmanager
def _gram_hooks(norms: list[nn.Module], width: int, current: list[Any]) -> Iterator[list[torch.Tensor]]:
    grams = [torch.zeros(width, width, dtype=torch.float64) for _ in norms]
    count = torch.zeros((), dtype=torch.float64)
    handles = []

    def hook(mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], site: int) -> None:
        x = hidden_in(args, kwargs)
        if x is None or x.shape[-1] != width:
            return
        rows = x.detach().to(torch.float64).reshape(-1, width).cpu()
        weights = _token_weights(current[0], x.shape[:-1])
        keep = rows.norm(dim=1) > 0
        if weights is not None:
            keep &= weights.reshape(-1).cpu() > 0
        rows = rows[keep]
        rows = rows / rows.norm(dim=1, keepdim=True)
        grams[site].add_(rows.T @ rows)
        if site == 0:
            count.add_(len(rows))

    for i, m in enumerate(norms):
        handles.append(m.register_forward_pre_hook(
            lambda mod, args, kwargs, i=i: hook(mod, args, kwargs, i), with_kwargs=True))
    try:
        yield grams
    finally:
        for h in handles:
            h.remove()
        current.append(int(count))


def principal_axes(model: nn.Module, norms: list[nn.Module], width: int, calibration: Any) -> Axes:
    """Run the calibration batches and diagonalise the second moment of the normalised norm inputs (all norms)."""
    return _diagonalised(_grams(model, norms, width, calibration), sum_sites=True)[0]


def site_axes(model: nn.Module, norms: list[nn.Module], width: int, calibration: Any) -> list[Axes]:
    """The principal axes at each norm's input separately (``rotate_per_layer``), in the order of ``norms``."""
    return _diagonalised(_grams(model, norms, width, calibration), sum_sites=False)


def _grams(model: nn.Module, norms: list[nn.Module], width: int, calibration: Any) -> tuple[list[torch.Tensor], int, int]:
    data = as_calibration(calibration)
    current: list[Any] = [None]
    batches = 0
    with eval_mode(model), torch.no_grad(), _gram_hooks(norms, width, current) as grams:
        for k, batch in enumerate(data.batches):
            if data.max_batches is not None and k >= data.max_batches:
                break
            current[0] = data.inputs(batch) if data.inputs else batch
            forward_batch(model, data, batch, k)
            batches += 1
    tokens = int(current[-1])
    if batches == 0 or tokens == 0:
        raise InvalidArgumentError("rotate=True found no calibration tokens: pass calibration=<iterable of batches "
                                   "shaped like example_inputs>")
    return grams, tokens, batches


def _diagonalised(found: tuple[list[torch.Tensor], int, int], sum_sites: bool) -> list[Axes]:
    grams, tokens, batches = found
    out = []
    for gram in ([sum(grams)] if sum_sites else grams):
        values, vectors = torch.linalg.eigh(gram / tokens)
        order = torch.argsort(values, descending=True, stable=True)
        out.append(Axes(vectors[:, order], values[order].clamp(min=0.0), tokens, batches))
    return out
