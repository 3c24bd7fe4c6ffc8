"""Timing helpers for latency targets: runnable pruned copies, real inputs, interleaved medians.

A *timer* is any ``timer(model, args, kwargs) -> float``: one forward pass, any unit (only ratios are
used). ``wall_clock_ms`` is the real one; tests inject a deterministic fake.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from secateurs.plans import Plan
from secateurs.targets import Timer
from secateurs.timing import medians, time_ms, torch_threads, uses_cuda

__all__ = ["interleaved_medians", "model_device", "real_inputs", "runnable_copy", "torch_threads", "wall_clock_ms"]



def wall_clock_ms(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> float:
    """Milliseconds of one forward pass under ``torch.inference_mode`` (CUDA synchronised around it)."""
    with torch.inference_mode():
        return time_ms(lambda: model(*args, **kwargs), cuda=uses_cuda(args, kwargs))


def interleaved_medians(models: Sequence[nn.Module], args: tuple[Any, ...], kwargs: dict[str, Any], timer: Timer,
                        repeats: int, warmup: int) -> list[float]:
    """Median time of each model over ``repeats`` interleaved, shuffled rounds (``secateurs.timing``)."""
    return medians([functools.partial(timer, m, args, kwargs) for m in models], repeats=repeats, warmup=warmup)


def model_device(model: nn.Module) -> torch.device:
    """The device of the first parameter or buffer (cpu for a model without tensors, or on the meta device)."""
    for t in (*model.parameters(), *model.buffers()):
        return torch.device("cpu") if t.is_meta else t.device
    return torch.device("cpu")


def real_inputs(example_inputs: Any, device: torch.device, batch: int | None) -> Any:
    """``example_inputs`` on ``device`` with real values (meta tensors become random floats / zero ids), the
    leading dim of batched tensors repeated or cut to ``batch`` when it is given."""
    first = _first_batch(example_inputs)

    def conv(x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            if x.is_meta:
                x = torch.randn(x.shape, device=device).to(x.dtype) if x.is_floating_point() else \
                    torch.zeros(x.shape, dtype=x.dtype, device=device)
            x = x.to(device)
            if batch is not None and first is not None and x.ndim and x.shape[0] == first and batch != first:
                x = x[torch.arange(batch, device=device) % first]
            return x
        if isinstance(x, (list, tuple)):
            return type(x)(conv(v) for v in x)
        if isinstance(x, Mapping):
            return {k: conv(v) for k, v in x.items()}
        return x

    return conv(example_inputs)


def _first_batch(x: Any) -> int | None:
    if isinstance(x, torch.Tensor):
        return int(x.shape[0]) if x.ndim else None
    values = x.values() if isinstance(x, Mapping) else x if isinstance(x, (list, tuple)) else ()
    for v in values:
        b = _first_batch(v)
        if b is not None:
            return b
    return None


def runnable_copy(model: nn.Module, plan: Plan | None, device: torch.device) -> nn.Module:
    """A copy of ``model`` on ``device`` with ``plan`` applied, in eval mode. A meta-device model is copied
    on the meta device, pruned, then materialised with random weights (timing does not depend on them)."""
    from secateurs.surgery.apply import apply_plan

    meta = any(t.is_meta for t in (*model.parameters(), *model.buffers()))
    out = copy.deepcopy(model)
    if plan is not None:
        apply_plan(out, plan)
    if meta:
        out = out.to_empty(device=device)
        _random_fill_(out)
    return out.to(device).eval()


def _random_fill_(model: nn.Module) -> None:
    """Weights ~ N(0, 0.02), float buffers 1, integer buffers 0 (valid running stats, positions and ids)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g).to(p.dtype) * 0.02)
        for b in model.buffers():
            b.fill_(1 if b.is_floating_point() else 0)
