"""Forward hooks that stream per-channel statistics and input moments of every layer into ``Statistics``."""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterable, Iterator
from typing import Any

import torch
from torch import nn

from secateurs.calibration.features import feature_map
from secateurs.calibration.layouts import layout_for
from secateurs.calibration.moments import Moments
from secateurs.calibration.stats import ChannelStats, Statistics
from secateurs.errors import InvalidArgumentError


@contextlib.contextmanager
def channel_hooks(model: nn.Module, stats: Statistics) -> Iterator[None]:
    handles = []
    for path, module in model.named_modules():
        layout = layout_for(module)
        if layout is None:
            continue

        def hook(mod: nn.Module, args: tuple[Any, ...], out: Any, path: str = path, dim: int = layout.act_dim,
                 rec_in: bool = layout.records_input) -> None:
            x = args[0] if args else None
            if rec_in and isinstance(x, torch.Tensor) and x.is_floating_point() and x.ndim:
                _record(stats.inputs, path, x, dim)
            y = out[0] if isinstance(out, (tuple, list)) else out
            if isinstance(y, torch.Tensor) and y.is_floating_point() and y.ndim:
                _record(stats.outputs, path, y, dim)

        handles.append(module.register_forward_hook(hook))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def moment_hooks(model: nn.Module, stats: Statistics, paths: Collection[str], gram: bool,
                  reset_on: Iterable[nn.Module] = ()) -> Iterator[None]:
    """Hooks recording input-feature moments of the modules at ``paths`` (see calibration.features).

    Layers that read the same input tensor with the same feature map (q/k/v, gate/up projections) share one
    ``Moments`` object, so their Gram matrix is stored and accumulated once. The table of inputs seen is
    cleared at every forward of ``model`` and of the modules ``reset_on`` (the blocks, in sequential mode).
    """
    handles = []
    seen: dict[tuple[object, ...], tuple[torch.Tensor, Moments]] = {}  # this forward: (input id, features) -> moments
    if paths:
        for root in (model, *reset_on):
            handles.append(root.register_forward_pre_hook(lambda mod, args: seen.clear()))
    for path in sorted(set(paths)):
        module = model.get_submodule(path)
        fmap = feature_map(module)
        if fmap is None or fmap.rows is None:
            raise InvalidArgumentError(f"cannot record input features of {path!r} ({type(module).__name__}): "
                                       "only Linear, Conv1d/Conv2d with zero padding and HF Conv1D are supported")

        def hook(mod: nn.Module, args: tuple[Any, ...], path: str = path, fmap: Any = fmap) -> None:
            x = args[0] if args else None
            if not (isinstance(x, torch.Tensor) and x.is_floating_point()):
                return
            key = (id(x), fmap.size, fmap.signature)
            hit = seen.get(key)
            m = stats.moments.get(path)
            if m is None and hit is not None and hit[0] is x:
                stats.moments[path] = hit[1]  # same tensor, same features: share
                return
            if m is not None and hit is not None and hit[0] is x and hit[1] is m:
                return  # already counted for a layer sharing these moments
            if m is None:
                m = stats.moments[path] = Moments.empty(fmap.size, gram, x.device)
            m.update(fmap.rows(x))
            seen[key] = (x, m)

        handles.append(module.register_forward_pre_hook(hook))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _record(table: dict[str, ChannelStats], path: str, x: torch.Tensor, dim: int) -> None:
    s = table.get(path)
    if s is None:
        s = table[path] = ChannelStats.empty(x.shape[dim], x.device)
    s.update(x, dim)


def all_reduce_(stats: Statistics) -> None:
    """Sum every accumulator across the ranks of the default process group, when one is initialized."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    tensors = stats.all_tensors()
    for t in tensors:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    n = torch.tensor(float(stats.n_batches), dtype=torch.float64, device=tensors[0].device if tensors else "cpu")
    dist.all_reduce(n, op=dist.ReduceOp.SUM)
    stats.n_batches = int(n.item())
