"""Learning-rate schedules of the optimizer ``recover`` builds: constant, or linear warm-up then cosine decay.

The schedule is a step pre-hook on the optimizer: before optimizer step ``k`` (0-based) of ``total`` it sets
every group's lr to its initial lr times :func:`factor`. It applies only to the SGD that ``recover`` builds
itself (``optimizer=None``); an optimizer or factory passed in keeps its own learning rate.
"""

from __future__ import annotations

import math
from typing import Any

import torch

SCHEDULES = ("constant", "cosine")


def factor(schedule: str, step: int, total: int | None, warmup: float) -> float:
    """The lr multiplier of optimizer step ``step`` (0-based) of ``total``: a linear ramp over the first
    ``warmup`` fraction of the steps, then 1 (``constant``) or a half cosine from 1 down to 0 at ``total``
    (``cosine``). With ``total`` unknown (data without a length) the multiplier is 1."""
    if total is None or total < 1:
        return 1.0
    ramp = int(round(warmup * total))
    if ramp and step < ramp:
        return (step + 1) / ramp
    if schedule == "constant":
        return 1.0
    t = min(1.0, (step - ramp) / max(1, total - ramp))
    return 0.5 * (1.0 + math.cos(math.pi * t))


def attach(optimizer: torch.optim.Optimizer, schedule: str, total: int | None, warmup: float) -> Any:
    """Drive the lr of every param group of ``optimizer`` by :func:`factor`; returns the hook handle."""
    base = [g["lr"] for g in optimizer.param_groups]
    count = [0]

    def pre_step(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        f = factor(schedule, count[0], total, warmup)
        for g, lr in zip(opt.param_groups, base, strict=False):
            g["lr"] = lr * f
        count[0] += 1

    return optimizer.register_step_pre_hook(pre_step)


def total_steps(steps: int | None, epochs: int, data: Any, grad_accum: int) -> int | None:
    """Optimizer steps of one ``recover`` run: ``steps``, or ``epochs`` passes of ``len(data)`` micro-batches
    (None when ``data`` has no length)."""
    if steps is not None:
        return steps
    try:
        return epochs * math.ceil(len(data) / grad_accum)
    except TypeError:
        return None
