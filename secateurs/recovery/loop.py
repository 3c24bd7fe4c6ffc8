"""recover(): fine-tune a (pruned) model, optionally distilling from a teacher, in one or many processes."""

from __future__ import annotations

import contextlib
import copy
import math
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from secateurs.errors import InvalidArgumentError
from secateurs.graph.sharded import is_fully_sharded
from secateurs.recovery import distributed as D
from secateurs.recovery import schedule as lr_schedule
from secateurs.recovery.config import EpochRecord, RecoverConfig, RecoverResult
from secateurs.recovery.distill import (
    FeatureRecorder,
    feature_loss,
    get_distill_loss,
    logits_of,
    parse_feature_pairs,
)
from secateurs.recovery.trainable import (
    OptimizerSpec,
    Trainable,
    call,
    default_task_loss,
    make_optimizer,
    model_device,
    probe_features,
    split_batch,
    to_device,
    wrap_ddp,
)

LossFn = Callable[[Any, Any], torch.Tensor]
_END = object()


@dataclass
class _Setup:
    """Everything one run needs, built from the first batch."""

    cfg: RecoverConfig
    student: nn.Module
    teacher: nn.Module | None
    task_loss: LossFn | None
    alpha: float
    pairs: list[tuple[str, str]]
    regularizers: list[Callable[[], torch.Tensor]]
    device: torch.device
    amp: torch.dtype | None  # autocast dtype, None when AMP is off
    model: nn.Module = field(init=False)  # Trainable, or DDP around it
    trainable: Trainable = field(init=False)
    optimizer: torch.optim.Optimizer = field(init=False)
    scaler: Any = None
    prepared: bool = False
    recorders: list[FeatureRecorder] = field(default_factory=list)

    @property
    def ddp(self) -> bool:
        return self.model is not self.trainable


def recover(
    student: nn.Module,
    data: Iterable[Any],
    teacher: nn.Module | None = None,
    loss: LossFn | None = None,
    *,
    optimizer: OptimizerSpec = None,
    metric: Callable[[nn.Module], float] | None = None,
    regularizer: Callable[[], torch.Tensor] | Iterable[Callable[[], torch.Tensor]] | None = None,
    config: RecoverConfig | None = None,
    **options: Any,
) -> RecoverResult:
    """Fine-tune ``student`` in place on ``data``, an iterable of ``(inputs, targets)`` batches.

    With a ``teacher`` the loss mixes soft-target distillation (``temperature``, ``alpha``) with the task
    loss; with a teacher and ``loss=None`` it is pure distillation and targets may be None. Without a
    teacher (or with an explicit ``alpha < 1``), ``loss=None`` means cross-entropy on the logits. ``feature_pairs`` adds hidden-feature matching
    through learned projections. ``regularizer``: callables returning a penalty added to the loss (e.g.
    ``sc.regularizers.bn_l1(model, 1e-4)``). ``metric(student) -> float`` runs after each epoch, in eval
    mode, for early stopping (``patience``). Scalar settings are the fields of :class:`RecoverConfig`,
    passed as keywords or as ``config``. Under an initialized process group the student is wrapped in
    DistributedDataParallel; give each rank its own share of the data (``secateurs.recovery.shard``).
    """
    cfg = RecoverConfig.make(config, options)
    if cfg.qat is not None:  # trains the fake-quantized graph of the student with this same function
        from secateurs.recovery.qat import recover_qat

        return recover_qat(recover, student, data, teacher, loss, cfg, optimizer=optimizer, metric=metric,
                           regularizer=regularizer)
    regs = _as_list(regularizer)
    pairs = parse_feature_pairs(cfg.feature_pairs)
    if pairs and teacher is None:
        raise InvalidArgumentError("feature_pairs need a teacher to match features against")
    alpha = cfg.alpha if cfg.alpha is not None else (0.0 if teacher is None else (1.0 if loss is None else 0.5))
    task = loss if loss is not None else default_task_loss
    if teacher is None and alpha > 0:
        raise InvalidArgumentError(f"alpha={alpha} weighs a distillation loss, but no teacher was given")
    device = model_device(student)
    amp = _resolve_amp(cfg.amp, cfg.amp_dtype, device)
    torch.manual_seed(cfg.seed)
    setup = _Setup(cfg, student, teacher, task if alpha < 1 else None, alpha, pairs, regs, device, amp)
    modes = [(m, m.training) for m in student.modules()] + ([(m, m.training) for m in teacher.modules()] if teacher else [])
    try:
        return _run(setup, data, optimizer, metric)
    finally:
        for r in setup.recorders:
            r.remove()
        for m, flag in modes:
            m.training = flag


def _as_list(reg: Any) -> list[Callable[[], torch.Tensor]]:
    if reg is None:
        return []
    return [reg] if callable(reg) else list(reg)


def _resolve_amp(amp: bool | str, dtype: str | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: float16 on CUDA and bfloat16 elsewhere unless ``dtype`` names one; None when off.

    ``"auto"`` turns AMP on for CUDA only: bfloat16 autocast on a CPU without native bfloat16 kernels can be
    slower than float32, so CPU AMP is opt-in (``amp=True``).
    """
    on = device.type == "cuda" if amp == "auto" else bool(amp)
    if not on:
        return None
    if dtype is None:
        return torch.float16 if device.type == "cuda" else torch.bfloat16
    return getattr(torch, dtype)


def _prepare(s: _Setup, first_inputs: Any, optimizer: OptimizerSpec, data: Any) -> None:
    s_rec = None
    if s.pairs and s.teacher is not None:  # recover() refuses feature pairs without a teacher
        s_rec = FeatureRecorder(s.student, [a for a, _ in s.pairs], "student")
        t_rec = FeatureRecorder(s.teacher, [b for _, b in s.pairs], "teacher")
        s.recorders += [s_rec, t_rec]
        s.trainable = Trainable(s.student, s_rec, [a for a, _ in s.pairs])
        s.trainable.build_projections(*probe_features(s.student, s.teacher, first_inputs, s_rec, t_rec, s.pairs))
    else:
        s.trainable = Trainable(s.student, None, [])
    s.optimizer = make_optimizer(optimizer, s.trainable, s.cfg.lr, s.cfg.momentum, s.cfg.weight_decay)
    if optimizer is None:  # the schedule drives only the SGD built here
        lr_schedule.attach(s.optimizer, s.cfg.schedule, lr_schedule.total_steps(s.cfg.steps, s.cfg.epochs, data,
                                                                                 s.cfg.grad_accum), s.cfg.warmup)
    use_ddp = D.is_distributed() if s.cfg.distributed == "auto" else bool(s.cfg.distributed)
    if use_ddp and not D.is_distributed():
        raise InvalidArgumentError("distributed=True needs an initialized process group with more than one rank")
    if use_ddp and is_fully_sharded(s.student):  # FSDP2 already reduces gradients across ranks
        if s.pairs:
            raise InvalidArgumentError(
                "feature_pairs with an FSDP-sharded student are not supported: the learned projections would not be "
                "synchronised across ranks; distil logits/embeddings only, or recover without FSDP")
        use_ddp = False
    s.model = wrap_ddp(s.trainable, s.device) if use_ddp else s.trainable
    if s.amp == torch.float16:  # bfloat16 has float32's range: no loss scaling needed
        s.scaler = torch.amp.GradScaler(s.device.type)
    s.student.train()
    if s.teacher is not None:
        s.teacher.eval()
    s.prepared = True


def _loss_terms(s: _Setup, inputs: Any, targets: Any) -> dict[str, torch.Tensor]:
    autocast = torch.autocast(s.device.type, dtype=s.amp) if s.amp is not None else contextlib.nullcontext()
    distill = get_distill_loss(s.cfg.distill_loss)
    terms: dict[str, torch.Tensor] = {}
    with autocast:
        out, feats = call(s.model, inputs)
        if s.task_loss is not None:
            terms["task"] = s.task_loss(out, targets)
        if s.teacher is not None:
            with torch.no_grad():
                t_out = call(s.teacher, inputs)
            terms["distill"] = distill(logits_of(out), logits_of(t_out), s.cfg.temperature)
            if s.pairs:
                t_rec = s.recorders[1]
                terms["features"] = sum(
                    (feature_loss(f, t_rec.pop(b), f"{a} -> {b}") for f, (a, b) in zip(feats, s.pairs, strict=True)),
                    torch.zeros((), device=s.device),
                )
    if s.regularizers:
        terms["regularizer"] = sum((r() for r in s.regularizers), torch.zeros((), device=s.device))
    total = torch.zeros((), device=s.device)
    weights = {"task": 1.0 - s.alpha, "distill": s.alpha, "features": s.cfg.feature_weight, "regularizer": 1.0}
    for k, v in terms.items():
        total = total + weights[k] * v.float()
    terms["loss"] = total
    return terms


def _optimizer_step(s: _Setup) -> None:
    params = [p for g in s.optimizer.param_groups for p in g["params"]]
    if s.scaler is not None:
        s.scaler.unscale_(s.optimizer)
    if s.cfg.max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(params, s.cfg.max_grad_norm)
    if s.scaler is not None:
        s.scaler.step(s.optimizer)
        s.scaler.update()
    else:
        s.optimizer.step()
    s.optimizer.zero_grad(set_to_none=True)


def _batches(data: Iterable[Any], device: torch.device) -> Iterator[tuple[Any, Any, bool]]:
    """(inputs, targets, is_last) while every rank still has a batch; ranks stop together.

    With ``len(data)`` the ranks agree on the count once per epoch; without it they check every batch.
    """
    try:
        count: int | None = D.min_across_ranks(len(data))  # type: ignore[arg-type]
    except TypeError:
        count = None
    it = iter(data)
    i = 0

    def fetch() -> Any:
        if count is not None:
            return next(it, _END) if i < count else _END
        nxt = next(it, _END)
        return nxt if D.all_true(nxt is not _END) else _END

    nxt = fetch()
    while nxt is not _END:
        cur = nxt
        i += 1
        nxt = fetch()
        inputs, targets = split_batch(cur)
        yield to_device(inputs, device), to_device(targets, device), nxt is _END


def _set_epoch(data: Any, epoch: int) -> None:
    for obj in (data, getattr(data, "sampler", None), getattr(data, "batch_sampler", None)):
        if obj is not None and hasattr(obj, "set_epoch"):
            obj.set_epoch(epoch)
            return


def _progress(s: _Setup, data: Any) -> Any:
    from tqdm.auto import tqdm

    total = s.cfg.steps
    if total is None:
        try:
            total = s.cfg.epochs * math.ceil(len(data) / s.cfg.grad_accum)  # type: ignore[arg-type]
        except TypeError:  # no length (a generator, or a shard of one)
            total = None
    disable = not (s.cfg.progress and D.is_main() and sys.stderr.isatty())
    return tqdm(total=total, disable=disable, desc="recover", unit="step", leave=False)


def _run(s: _Setup, data: Iterable[Any], optimizer: OptimizerSpec, metric: Callable[[nn.Module], float] | None) -> RecoverResult:
    result = RecoverResult()
    tracker = _EarlyStop(s.cfg)
    bar = None
    epoch = 0
    try:
        while True:
            _set_epoch(data, epoch)
            sums: dict[str, float] = {}
            n = micro = 0
            for inputs, targets, last in _batches(data, s.device):
                if not s.prepared:
                    _prepare(s, inputs, optimizer, data)
                    bar = _progress(s, data)
                sync = last or (micro + 1) % s.cfg.grad_accum == 0
                with contextlib.nullcontext() if sync or not s.ddp else s.model.no_sync():  # type: ignore[operator]
                    terms = _loss_terms(s, inputs, targets)
                    loss = terms["loss"] / s.cfg.grad_accum
                    (s.scaler.scale(loss) if s.scaler is not None else loss).backward()
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach())
                n += 1
                micro = 0 if sync else micro + 1
                if sync:
                    _optimizer_step(s)
                    result.steps += 1
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{float(terms['loss'].detach()):.4f}", refresh=False)
                    if s.cfg.steps is not None and result.steps >= s.cfg.steps:
                        break
            if n == 0:
                raise InvalidArgumentError(
                    f"data yielded no batches in epoch {epoch} (a generator can be iterated only once: pass a "
                    "list or a DataLoader, or use steps=)" if epoch else "data yielded no batches")
            if s.ddp:
                D.average_buffers_(s.student)
            record = _record(epoch, result.steps, sums, n)
            record.metric = _measure(s, metric)
            result.epochs.append(record)
            epoch += 1
            stop = tracker.update(record, s.student)
            done = result.steps >= s.cfg.steps if s.cfg.steps is not None else epoch >= s.cfg.epochs
            if stop or done:
                result.stopped_early = stop and not done
                break
    finally:
        if bar is not None:
            bar.close()
    tracker.finish(result, s.student)
    return result


def _record(epoch: int, steps: int, sums: dict[str, float], n: int) -> EpochRecord:
    keys = ["loss", "task", "distill", "features", "regularizer"]
    present = [k for k in keys if k in sums]
    means = dict(zip(present, D.mean_across_ranks([sums[k] / n for k in present]), strict=True))
    return EpochRecord(epoch, steps, means["loss"], means.get("task"), means.get("distill"),
                       means.get("features"), means.get("regularizer"))


def _measure(s: _Setup, metric: Callable[[nn.Module], float] | None) -> float | None:
    if metric is None:
        return None
    flags = [(m, m.training) for m in s.student.modules()]
    s.student.eval()
    try:
        with torch.no_grad():
            value = float(metric(s.student))
    finally:
        for m, flag in flags:
            m.training = flag
    return float(D.broadcast_object(value))  # rank 0 decides, so every rank stops at the same epoch


class _EarlyStop:
    def __init__(self, cfg: RecoverConfig):
        self.cfg = cfg
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.bad = 0
        self.state: dict[str, torch.Tensor] | None = None

    def update(self, record: EpochRecord, student: nn.Module) -> bool:
        if record.metric is None:
            return False
        better = self.best is None or (record.metric > self.best if self.cfg.metric_mode == "max" else record.metric < self.best)
        if better:
            self.best, self.best_epoch, self.bad = record.metric, record.epoch, 0
            if self.cfg.restore_best:
                self.state = copy.deepcopy(student.state_dict())
            return False
        self.bad += 1
        return self.cfg.patience is not None and self.bad >= self.cfg.patience

    def finish(self, result: RecoverResult, student: nn.Module) -> None:
        result.best_metric, result.best_epoch = self.best, self.best_epoch
        if self.state is not None and self.best_epoch != len(result.epochs) - 1:
            student.load_state_dict(self.state)
