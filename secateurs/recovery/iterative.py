"""iterative_prune(): prune a little, recover, repeat; checkpointed after every step and resumable."""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from secateurs.errors import InvalidArgumentError, VerificationError
from secateurs.graph.analysis import fingerprint
from secateurs.graph.capture import ExampleInputs
from secateurs.plans import Plan
from secateurs.recovery import checkpoint as ckpt_io
from secateurs.recovery import distributed as D
from secateurs.selection.select import resolve_ratio

Ratio = float | Mapping[str, float]


@dataclass
class StepInfo:
    """What ``recover_fn(model, info)`` is told about the step that just pruned ``model``."""

    index: int  # 0-based
    ratio: dict[str, float]  # cumulative fraction of the original units removed after this step
    step_ratio: dict[str, float]  # fraction of the current units this step removed
    plan: Plan
    seed: int  # seed for this step's recovery (torch's global RNG is already seeded with it)


@dataclass
class StepRecord:
    index: int
    ratio: dict[str, float]
    params: int
    units_removed: int
    verification: str | None = None
    recovery: Any = None  # whatever recover_fn returned (e.g. a RecoverResult)


@dataclass
class IterativeResult:
    model: nn.Module = field(repr=False)
    plans: list[Plan] = field(repr=False)
    steps: list[StepRecord]
    resumed_from: int  # completed steps found in checkpoint_dir (0 for a fresh run)


def linear_schedule(final_ratio: float, n_steps: int) -> list[float]:
    """Cumulative ratios removing the same number of original units at every step."""
    _check_schedule_args(final_ratio, n_steps)
    return [final_ratio * (k + 1) / n_steps for k in range(n_steps)]


def geometric_schedule(final_ratio: float, n_steps: int) -> list[float]:
    """Cumulative ratios removing the same fraction of the remaining units at every step."""
    _check_schedule_args(final_ratio, n_steps)
    return [1 - (1 - final_ratio) ** ((k + 1) / n_steps) for k in range(n_steps)]


def cosine_schedule(final_ratio: float, n_steps: int) -> list[float]:
    """Cumulative ratios on a half-cosine ramp: small steps first and last, the largest in the middle."""
    _check_schedule_args(final_ratio, n_steps)
    return [final_ratio * (1 - math.cos(math.pi * (k + 1) / n_steps)) / 2 for k in range(n_steps)]


def _check_schedule_args(final_ratio: float, n_steps: int) -> None:
    if not 0 < final_ratio < 1:
        raise InvalidArgumentError(f"final_ratio must be in (0, 1), got {final_ratio!r}")
    if not isinstance(n_steps, int) or n_steps < 1:
        raise InvalidArgumentError(f"n_steps must be a positive integer, got {n_steps!r}")


def _cumulative(steps: Sequence[Ratio]) -> list[dict[str, float]]:
    if isinstance(steps, (str, bytes)) or not isinstance(steps, Sequence) or not steps:
        raise InvalidArgumentError(f"steps must be a non-empty list of cumulative ratios, got {steps!r}")
    out = [resolve_ratio(r) for r in steps]
    for prev, cur in zip([dict.fromkeys(out[0], 0.0), *out], out, strict=False):
        for kind, r in cur.items():
            if r < prev.get(kind, 0.0):
                raise InvalidArgumentError(
                    f"steps are cumulative fractions of the original units removed and must not decrease; "
                    f"got {steps!r}")
    return out


def _step_ratio(prev: dict[str, float], cur: dict[str, float]) -> dict[str, float]:
    """The fraction of the current units to remove so that ``cur`` of the original is removed in total."""
    return {k: max(0.0, 1 - (1 - r) / (1 - prev.get(k, 0.0))) for k, r in cur.items()}


def _settings(importance: Any, ignore: Any, round_to: int, min_keep: int, seed: int) -> dict[str, Any]:
    names = [] if ignore is None else ([ignore] if isinstance(ignore, (str, type)) else list(ignore))
    return {"importance": getattr(importance, "name", importance) if not isinstance(importance, str) else importance,
            "ignore": [n if isinstance(n, str) else getattr(n, "__qualname__", repr(n)) for n in names],
            "round_to": round_to, "min_keep": min_keep, "seed": seed}


def iterative_prune(
    model: nn.Module,
    example_inputs: ExampleInputs,
    steps: Sequence[Ratio],
    *,
    recover_fn: Callable[[nn.Module, StepInfo], Any] | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    importance: Any = "l2",
    ignore: Iterable[str | type] | str | type | None = None,
    round_to: int = 1,
    min_keep: int = 1,
    seed: int = 0,
    check: bool = False,
    tolerance: float = 1e-4,
    progress: bool = True,
) -> IterativeResult:
    """Prune ``model`` in place in stages: after step ``k`` the fraction ``steps[k]`` of the original units is gone.

    ``steps`` are cumulative ratios (``[0.3, 0.5, 0.7]``, or ``linear_schedule(0.7, 3)``). After each prune,
    ``recover_fn(model, info)`` fine-tunes (e.g. calls ``sc.recover``) with torch's RNG seeded per step.
    With ``checkpoint_dir`` every completed step is saved (rank 0 writes) and a later call with a fresh copy
    of the same original model resumes after the last completed step, ending as an uninterrupted run would.
    Under torch.distributed each rank prunes its own replica; plans are compared across ranks.
    """
    cumulative = _cumulative(steps)
    settings = _settings(importance, ignore, round_to, min_keep, seed)
    original_fp = fingerprint(model)
    plans: list[Plan] = []
    if checkpoint_dir is not None:
        plans = _resume(model, checkpoint_dir, original_fp, cumulative, settings)
    resumed = len(plans)
    records: list[StepRecord] = []
    from tqdm.auto import tqdm

    bar = tqdm(total=len(cumulative), initial=resumed, desc="iterative prune", unit="step", leave=False,
               disable=not (progress and D.is_main() and sys.stderr.isatty()))
    try:
        for k in range(resumed, len(cumulative)):
            prev = cumulative[k - 1] if k else {}
            step_ratio = _step_ratio(prev, cumulative[k])
            plan, record = _prune_step(model, example_inputs, k, cumulative[k], step_ratio, importance, ignore,
                                       round_to, min_keep, seed, check, tolerance)
            plans.append(plan)
            info = StepInfo(k, cumulative[k], step_ratio, plan, seed + 1000 * (k + 1))
            torch.manual_seed(info.seed)
            if recover_fn is not None:
                record.recovery = recover_fn(model, info)
            records.append(record)
            if checkpoint_dir is not None:
                _save(model, checkpoint_dir, original_fp, cumulative, settings, plans)
            bar.update(1)
    finally:
        bar.close()
    return IterativeResult(model, plans, records, resumed)


def _prune_step(model: nn.Module, x: ExampleInputs, index: int, ratio: dict[str, float], step_ratio: dict[str, float],
                importance: Any, ignore: Any, round_to: int, min_keep: int, seed: int, check: bool,
                tolerance: float) -> tuple[Plan, StepRecord]:
    from secateurs.api import plan as make_plan
    from secateurs.surgery.apply import apply_plan, snapshot_modules
    from secateurs.verification.oracle import compare, reference_outputs

    plan = make_plan(model, x, ratio=step_ratio, importance=importance, ignore=ignore, round_to=round_to,
                     min_keep=min_keep, seed=seed)
    D.check_same_plan(plan.to_json(), what=f"plan of step {index}")
    reference = reference_outputs(model, plan, x) if check else None
    undo = snapshot_modules(list(model.modules())) if check else None
    apply_plan(model, plan, journal=undo.journal if undo is not None else None)
    message = None
    if reference is not None and undo is not None:
        result = compare(reference, model, plan, x, tolerance=tolerance, reexport=False)
        if not result.ok:
            undo.restore()
            raise VerificationError(f"step {index}: {result.message}; the model was restored to the previous step")
        message = result.message
        undo.journal.drop()  # the replaced tensors (or their spill file) are let go
    params = sum(p.numel() for p in model.parameters())
    return plan, StepRecord(index, ratio, params, plan.removed_units(), message)


def _resume(model: nn.Module, directory: str | os.PathLike[str], original_fp: str, cumulative: list[dict[str, float]],
            settings: dict[str, Any]) -> list[Plan]:
    ckpt = ckpt_io.read(directory)
    if ckpt is None:
        return []
    where = f"checkpoint in {directory}"
    if ckpt.fingerprint != original_fp:
        raise InvalidArgumentError(
            f"the {where} was made from another architecture (fingerprint {ckpt.fingerprint}, this model "
            f"{original_fp}); pass a fresh, unpruned copy of the original model, or use a new checkpoint_dir")
    done = ckpt.completed
    saved_steps = [resolve_ratio(r) for r in ckpt.steps]
    if saved_steps[:done] != cumulative[:done] or done > len(cumulative):
        raise InvalidArgumentError(
            f"the {where} completed steps {ckpt.steps[:done]}, which this schedule {cumulative} does not start "
            "with; use the same steps (a longer schedule may extend it) or a new checkpoint_dir")
    if json.loads(json.dumps(settings)) != ckpt.settings:
        raise InvalidArgumentError(f"the {where} was made with settings {ckpt.settings}, this call uses {settings}")
    ckpt_io.restore_(model, directory, ckpt)
    D.check_same_plan(json.dumps([p.to_dict() for p in ckpt.plans]), what="resumed checkpoint")
    return list(ckpt.plans)


def _save(model: nn.Module, directory: str | os.PathLike[str], original_fp: str, cumulative: list[dict[str, float]],
          settings: dict[str, Any], plans: list[Plan]) -> None:
    if D.is_main():
        ckpt = ckpt_io.Checkpoint(original_fp, cumulative, settings, list(plans), f"step_{len(plans):03d}.safetensors")
        ckpt_io.save(directory, model, ckpt)
    D.barrier()


def load_checkpoint(model: nn.Module, checkpoint_dir: str | os.PathLike[str]) -> nn.Module:
    """The pruned, recovered model of a checkpoint, rebuilt in place from a fresh copy of the original ``model``."""
    return ckpt_io.load(model, checkpoint_dir)

