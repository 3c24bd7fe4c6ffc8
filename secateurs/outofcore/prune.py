"""prune_checkpoint(): prune a Hugging Face checkpoint larger than memory, one part at a time.

The same stages as ``sc.prune``, scheduled by part: the model is built without weights and captured on the meta
device; data criteria get their statistics from the sequential calibration with one block loaded at a time;
criteria read weights through a mapping that loads each tensor when asked; selection and the plan are the
in-memory ones. Then every part (the embeddings, each decoder layer, the final norm and head) is read, checked
against its masked original on the example inputs, cut with the surgery's own slicing and written as a shard of
the new checkpoint, whose config is the one the surgery handlers rewrite on the weightless model.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from secateurs.calibration.data import CalibrationData, as_calibration
from secateurs.config import PruneConfig
from secateurs.errors import InvalidArgumentError, PlanError
from secateurs.graph.analysis import analyze
from secateurs.graph.capture import ExampleInputs
from secateurs.io.atomic import atomic_dir, check_target, write_text
from secateurs.outofcore.checkpoint import Checkpoint
from secateurs.outofcore.memory import trim
from secateurs.outofcore.parts import LazyTensors, Part, Resident, Schedule, schedule
from secateurs.outofcore.skeleton import build_skeleton, load_, release_
from secateurs.outofcore.verify import PartCheck, PartChecker
from secateurs.outofcore.writer import ShardWriter, copy_side_files
from secateurs.planning.checks import run_plan_checks
from secateurs.planning.defaults import resolve as resolve_defaults
from secateurs.planning.make import make_plan
from secateurs.plans import Plan
from secateurs.progress import bar
from secateurs.scoring.registry import get_criterion
from secateurs.surgery.apply import apply_plan
from secateurs.surgery.journal import sliced
from secateurs.targets import LatencyTarget


@dataclass
class CheckpointReport:
    """What ``prune_checkpoint`` did: the plan, the sizes, and the check of every part."""

    plan: Plan
    output: Path
    params_before: int
    params_after: int
    bytes_before: int
    bytes_after: int
    checks: list[PartCheck] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    copied: list[str] = field(default_factory=list)

    def summary(self) -> str:
        modes = sorted({c.mode for c in self.checks})
        worst = max((c.rel_error for c in self.checks if c.rel_error is not None), default=None)
        check = (f"{len(self.checks)} parts verified ({', '.join(modes)}"
                 + (f"; worst relative error {worst:.2g}" if worst is not None else "") + ")") if self.checks else "not verified"
        return (f"params {self.params_before / 1e6:.1f}M -> {self.params_after / 1e6:.1f}M "
                f"({self.params_after / max(self.params_before, 1):.1%} kept); weights {self.bytes_before / 2**30:.2f} GiB -> "
                f"{self.bytes_after / 2**30:.2f} GiB\ngroups pruned: {sum(1 for g in self.plan.groups if g.removed)} of "
                f"{len(self.plan.groups)}, units removed: {self.plan.removed_units()}\n{check}\nwritten to {self.output}")

    def to_dict(self) -> dict[str, Any]:
        return {"output": str(self.output), "params_before": self.params_before, "params_after": self.params_after,
                "bytes_before": self.bytes_before, "bytes_after": self.bytes_after,
                "checks": [c.to_dict() for c in self.checks], "seconds": self.seconds, "copied": self.copied,
                "settings": self.plan.settings}


def prune_checkpoint(src: str | Path, dst: str | Path, example_inputs: ExampleInputs | None = None,
                     config: PruneConfig | None = None, *, calibration: Any = None, overwrite: bool = False,
                     **options: Any) -> CheckpointReport:
    """Prune the Hugging Face checkpoint directory ``src`` (safetensors) into ``dst`` without ever holding the
    model: options as ``sc.prune`` (a ``PruneConfig`` and/or keywords). Peak memory is about the embeddings and
    LM head, two decoder layers and the calibration activations.

    ``example_inputs`` (default: 16 random token ids) drive the capture on the meta device and the per-part
    check; data criteria read ``calibration`` batches, run block by block. ``dst`` gets the pruned shards, their
    index, the rewritten ``config.json``, the tokenizer and generation files of ``src`` and ``plan.json``;
    it loads with ``AutoModelForCausalLM.from_pretrained(dst)``. Written atomically: on any error nothing is left.
    """
    config = PruneConfig.build(config, **options)
    check_target(Path(dst).absolute(), overwrite)
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    ckpt = Checkpoint(src)
    model = build_skeleton(ckpt)
    config, defaults = _resolve_defaults(config, model, calibration)
    _refuse(config)
    x = example_inputs if example_inputs is not None else default_inputs(model)
    sched = schedule(model)
    analysis = analyze(model, x)
    times["capture"] = time.perf_counter() - t0
    plan, pruned = _plan(model, ckpt, sched, analysis, config, x, calibration, times, defaults)
    t1 = time.perf_counter()
    with atomic_dir(dst, overwrite) as tmp:
        checker = PartChecker(model, pruned, plan, x, config.tolerance) if config.check else None
        writer = ShardWriter(tmp, sum(1 for p in sched.parts if p.tensors))
        checks = [c for part in bar(sched.parts, "writing shards") if (c := _part(ckpt, model, pruned, plan, part, sched,
                                                                                 writer, checker)) is not None]
        writer.finish()
        _write_config(pruned, ckpt, tmp)
        copied = copy_side_files(ckpt.root, tmp)
        plan.settings["files"] = sorted([p.name for p in tmp.iterdir()] + ["plan.json"])  # what --force may replace
        write_text(tmp / "plan.json", plan.to_json(indent=1))
    times["write"] = time.perf_counter() - t1
    return CheckpointReport(plan, Path(dst), _count(model, ckpt), _count(pruned, ckpt), ckpt.total_bytes,
                            writer.bytes, checks, times, copied)


def _resolve_defaults(config: PruneConfig, model: nn.Module, calibration: Any) -> tuple[PruneConfig, dict[str, Any] | None]:
    """``"auto"`` criterion and compensation as in memory, except that compensation is not run out of core."""
    config, record = resolve_defaults(config, model, calibration, weights_elsewhere=True)
    if record is not None and record.get("compensate") is not None:
        record["compensate"] = None
        record["reason"] += "; no compensation: not run out of core yet"
        config = dataclasses.replace(config, compensate=None)
    return config, record


def _refuse(config: PruneConfig) -> None:
    """Options the out-of-core schedule does not run yet, refused before any work."""
    criterion = get_criterion(config.importance)
    if getattr(criterion, "needs_grads", False):
        raise InvalidArgumentError(f"importance {criterion.name!r} needs gradients through the whole model, which an "
                                   "out-of-core run never holds; use a weight criterion (l2) or an activation one (wanda)")
    if config.drop_layers:
        raise InvalidArgumentError("drop_layers= is not run out of core yet; prune widths out of core, or drop layers "
                                   "with sc.prune on a machine that holds the model")
    if config.compensate is not None:
        raise InvalidArgumentError("compensate= is not run out of core yet; use sc.prune on a machine that holds the model")
    if isinstance(config.target, LatencyTarget):
        raise InvalidArgumentError("latency= targets time pruned copies of the model, which an out-of-core run never "
                                   "holds; pass ratio= (or macs=/params=)")


def default_inputs(model: nn.Module, seq_len: int = 16) -> dict[str, Any]:
    vocab = int(getattr(model.config, "vocab_size", 100))
    ids = torch.randint(1, vocab, (1, seq_len), generator=torch.Generator().manual_seed(0))
    return {"input_ids": ids, "use_cache": False}


def _plan(model: nn.Module, ckpt: Checkpoint, sched: Schedule, analysis: Any, config: PruneConfig, x: Any,
          calibration: Any, times: dict[str, float], defaults: dict[str, Any] | None) -> tuple[Plan, nn.Module]:
    """The plan (scores read part by part) and the weightless pruned model (surgery on the meta device); raises
    before any writing when the pruned config would not rebuild the pruned shapes."""
    t0 = time.perf_counter()
    cal = None
    if getattr(get_criterion(config.importance), "needs_data", False) and calibration is not None:
        data = as_calibration(calibration)
        cal = CalibrationData(data.batches, data.inputs, data.max_batches, data.progress, True, sched.container,
                              Resident(model, ckpt, sched))
    budget = max(sum(ckpt.tensors[n].nbytes for n in p.tensors) for p in sched.blocks)  # groups live in a block
    lazy = LazyTensors(model, ckpt, budget=budget)
    plan = make_plan(model, analysis, config, calibration=cal if cal is not None else calibration, tensors=lazy,
                     example_inputs=x)
    lazy.clear()
    if defaults is not None:
        plan.settings["defaults"] = defaults
    run_plan_checks(model, plan)  # as in memory: said before any surgery or writing
    times["plan"] = time.perf_counter() - t0
    pruned = copy.deepcopy(model)
    apply_plan(pruned, plan)  # shapes only: the handlers rewrite the modules' attributes and the config
    problem = _rebuild_problem(pruned)
    if problem:
        raise PlanError(f"the pruned checkpoint would not load with {type(pruned).__name__}.from_pretrained: "
                        f"{problem}; nothing was written (change the ratios, e.g. round_to= for the hidden size)")
    return plan, pruned


def _rebuild_problem(pruned: nn.Module) -> str | None:
    """Why the stock class built from the pruned config would not have the pruned shapes (None when it would)."""
    config: Any = copy.deepcopy(getattr(pruned, "config"))  # noqa: B009  # a PreTrainedModel's config
    try:
        if callable(getattr(config, "validate", None)):
            config.validate()
        with torch.device("meta"):
            fresh = type(pruned)(config)
    except Exception as exc:  # any error of foreign code: its message is the reason
        return f"its config is rejected ({str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__})"
    want = {k: tuple(v.shape) for k, v in pruned.state_dict(keep_vars=True).items()}
    got = {k: tuple(v.shape) for k, v in fresh.state_dict(keep_vars=True).items()}
    bad = [f"{k} {got.get(k)} vs pruned {v}" for k, v in want.items() if got.get(k) != v]
    return f"{len(bad)} tensors differ, e.g. {bad[0]}" if bad else None


def _part(ckpt: Checkpoint, model: nn.Module, pruned: nn.Module, plan: Plan, part: Part, sched: Schedule,
          writer: ShardWriter, checker: PartChecker | None) -> PartCheck | None:
    """Read one part, check it against its masked original, cut it and write its shard."""
    after = part is sched.suffix
    names = part.tensors + (sched.prefix.tensors if after else ())  # the head runs after the embeddings
    original = ckpt.read(names)
    load_(model, original)
    if checker is not None:
        checker.original(part.block, after)
    release_(model, list(names))
    cut = {n: sliced(original.pop(n), plan.keep[n]) if n in plan.keep else original.pop(n) for n in names}
    writer.write({n: cut[n] for n in part.tensors})
    if checker is None:
        trim()
        return None
    load_(pruned, cut)
    try:
        return checker.pruned(part.name, part.block, after)
    finally:
        release_(pruned, list(names))
        trim()


def _write_config(pruned: nn.Module, ckpt: Checkpoint, directory: Path) -> None:
    config: Any = copy.deepcopy(getattr(pruned, "config"))  # noqa: B009  # a PreTrainedModel's config
    import transformers

    original = transformers.AutoConfig.from_pretrained(ckpt.root, local_files_only=True)
    if hasattr(original, "use_cache"):
        config.use_cache = original.use_cache  # turned off on the weightless model only
    config.save_pretrained(directory)


def _count(model: nn.Module, ckpt: Checkpoint) -> int:
    """Parameters and buffers the checkpoint stores, in the shapes ``model`` has (a tied tensor once)."""
    seen: set[int] = set()
    total = 0
    for name, t in model.state_dict(keep_vars=True).items():
        if id(t) not in seen and name in ckpt.tensors:
            seen.add(id(t))
            total += t.numel()
    return total
