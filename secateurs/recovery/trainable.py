"""The module that ``recover`` trains: the student plus feature projections, DDP-wrapped when distributed."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from secateurs.errors import InvalidArgumentError, InvalidTypeError
from secateurs.graph.capture import eval_mode, normalize_inputs
from secateurs.recovery.distill import FeatureRecorder, logits_of, make_projection

OptimizerSpec = torch.optim.Optimizer | Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer] | None


def to_device(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, Mapping):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


def split_batch(batch: Any) -> tuple[Any, Any]:
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    raise InvalidTypeError(
        f"each batch must be an (inputs, targets) pair, got {type(batch).__name__}"
        + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
        + "; use (inputs, None) when distilling without targets"
    )


def call(model: nn.Module, inputs: Any) -> Any:
    args, kwargs = normalize_inputs(inputs)
    return model(*args, **kwargs)


def model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    return torch.device("cpu")


class Trainable(nn.Module):
    """Student and projections in one module, so one DDP wrapper syncs both.

    ``forward`` returns the student output and the projected student features, in pair order.
    """

    def __init__(self, student: nn.Module, recorder: FeatureRecorder | None, names: list[str]):
        super().__init__()
        self.student = student
        self.projections = nn.ModuleList()
        self._recorder = recorder
        self._names = names

    def build_projections(self, student_feats: list[torch.Tensor], teacher_feats: list[torch.Tensor]) -> None:
        device = model_device(self.student)
        for s, t in zip(student_feats, teacher_feats, strict=True):
            self.projections.append(make_projection(s, t).to(device))

    def forward(self, *args: Any, **kwargs: Any) -> tuple[Any, list[torch.Tensor]]:
        out = self.student(*args, **kwargs)
        if self._recorder is None:
            return out, []
        feats = [proj(self._recorder.pop(n)) for proj, n in zip(self.projections, self._names, strict=True)]
        return out, feats


def probe_features(student: nn.Module, teacher: nn.Module, inputs: Any, s_rec: FeatureRecorder,
                   t_rec: FeatureRecorder, pairs: list[tuple[str, str]]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """One no-grad eval-mode pass of both models to learn the feature shapes (BN statistics untouched)."""
    with torch.no_grad(), eval_mode(student), eval_mode(teacher):
        call(student, inputs)
        call(teacher, inputs)
    s = [s_rec.pop(a) for a, _ in pairs]
    t = [t_rec.pop(b) for _, b in pairs]
    return s, t


def make_optimizer(spec: OptimizerSpec, trainable: Trainable, lr: float, momentum: float,
                   weight_decay: float) -> torch.optim.Optimizer:
    params = [p for p in trainable.parameters() if p.requires_grad]
    if not params:
        raise InvalidArgumentError("the student has no trainable parameters (all have requires_grad=False)")
    if spec is None:
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if isinstance(spec, torch.optim.Optimizer):
        held = {id(p) for g in spec.param_groups for p in g["params"]}
        extra = [p for p in trainable.projections.parameters() if id(p) not in held]
        if extra:
            spec.add_param_group({"params": extra})
        current = {id(q) for q in params}
        stale = sum(1 for g in spec.param_groups for p in g["params"] if id(p) not in current)
        if stale:
            raise InvalidArgumentError(
                f"the optimizer holds {stale} tensors that are not parameters of the student; build it after "
                "pruning (apply replaces the pruned parameters), or pass a factory such as "
                "lambda params: torch.optim.AdamW(params, lr=1e-3)"
            )
        return spec
    if callable(spec):
        return spec(params)
    raise InvalidTypeError(f"optimizer must be a torch optimizer, a factory taking parameters, or None; got {spec!r}")


def default_task_loss(output: Any, targets: Any) -> torch.Tensor:
    if targets is None:
        raise InvalidArgumentError(
            "cross-entropy needs targets, but the batch has targets=None; pass a teacher with alpha=1 for pure "
            "distillation, or a loss that does not need targets")
    logits = logits_of(output)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def wrap_ddp(trainable: Trainable, device: torch.device) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(trainable, device_ids=device_ids)
