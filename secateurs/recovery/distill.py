"""Knowledge-distillation losses: soft-target KL on logits (or MSE/cosine on embeddings) and feature matching."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from secateurs.errors import InvalidArgumentError, InvalidTypeError


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 2.0) -> torch.Tensor:
    """KL(softmax(t/T) || softmax(s/T)) * T^2, averaged over every position but the class dimension (last).

    The T^2 factor keeps the gradient scale independent of the temperature (Hinton et al., 2015).
    """
    if temperature <= 0:
        raise InvalidArgumentError(f"temperature must be positive, got {temperature!r}")
    if student_logits.shape != teacher_logits.shape:
        raise InvalidArgumentError(
            f"student logits {tuple(student_logits.shape)} and teacher logits {tuple(teacher_logits.shape)} "
            "must have the same shape for distillation"
        )
    n_classes = student_logits.shape[-1]
    s = F.log_softmax(student_logits.float().reshape(-1, n_classes) / temperature, dim=-1)
    t = F.log_softmax(teacher_logits.float().reshape(-1, n_classes) / temperature, dim=-1)
    return F.kl_div(s, t, reduction="batchmean", log_target=True) * temperature**2


def reverse_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Token-level reverse KL, KL(softmax(s/T) || softmax(t/T)) * T^2, averaged over every position (MiniLLM,
    Gu et al., 2024): mode-seeking, the student is penalised for putting mass where the teacher puts little,
    rather than for missing some of the teacher's mass (forward KL, ``kd_loss``). MiniLLM optimises the
    sequence-level reverse KL with policy gradients over sampled continuations; this is its per-token form on
    the teacher-forced data, which needs no sampling.
    """
    if temperature <= 0:
        raise InvalidArgumentError(f"temperature must be positive, got {temperature!r}")
    _check_shapes(student_logits, teacher_logits, "logits")
    n_classes = student_logits.shape[-1]
    s = F.log_softmax(student_logits.float().reshape(-1, n_classes) / temperature, dim=-1)
    t = F.log_softmax(teacher_logits.float().reshape(-1, n_classes) / temperature, dim=-1)
    return (s.exp() * (s - t)).sum(-1).mean() * temperature**2


def _check_shapes(student: torch.Tensor, teacher: torch.Tensor, what: str) -> None:
    if student.shape != teacher.shape:
        raise InvalidArgumentError(
            f"student {what} {tuple(student.shape)} and teacher {what} {tuple(teacher.shape)} must have the same "
            "shape for distillation"
        )


def mse_distill_loss(student_out: torch.Tensor, teacher_out: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Mean squared error between student and teacher outputs (e.g. sentence embeddings); ignores ``temperature``."""
    _check_shapes(student_out, teacher_out, "outputs")
    return F.mse_loss(student_out.float(), teacher_out.float())


def cosine_distill_loss(student_out: torch.Tensor, teacher_out: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Mean of ``1 - cos(student, teacher)`` over every vector along the last dimension (e.g. one embedding
    per sentence): 0 when every student vector points where the teacher's does. Ignores ``temperature``."""
    _check_shapes(student_out, teacher_out, "outputs")
    cos = F.cosine_similarity(student_out.float(), teacher_out.float(), dim=-1)
    return (1.0 - cos).mean()


DistillLoss = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]

DISTILL_LOSSES: dict[str, DistillLoss] = {
    "kl": kd_loss,  # logits of a classifier or LM: forward KL(teacher || student)
    "reverse_kl": reverse_kd_loss,  # logits of an LM: reverse KL(student || teacher), MiniLLM
    "mse": mse_distill_loss,  # embeddings, regression outputs
    "cosine": cosine_distill_loss,  # embeddings compared by direction (sentence embeddings)
}


def get_distill_loss(name: str) -> DistillLoss:
    """The distillation loss registered as ``name`` (``recover(distill_loss=name)``)."""
    try:
        return DISTILL_LOSSES[name]
    except KeyError:
        raise InvalidArgumentError(
            f"unknown distill_loss {name!r}; known: {sorted(DISTILL_LOSSES)} (add one to "
            "secateurs.recovery.distill.DISTILL_LOSSES)"
        ) from None


def logits_of(output: Any) -> torch.Tensor:
    """The logits tensor of a model output: a tensor, the first element of a tuple, or ``.logits``."""
    if isinstance(output, torch.Tensor):
        return output
    if hasattr(output, "logits"):
        return output.logits
    if isinstance(output, Mapping) and "logits" in output:
        return output["logits"]
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise InvalidTypeError(
        f"cannot find logits in a model output of type {type(output).__name__}; return a tensor, a tuple "
        "whose first element is the logits, or an object with a .logits attribute"
    )


def parse_feature_pairs(pairs: Mapping[str, str] | Iterable[str | tuple[str, str]] | None) -> list[tuple[str, str]]:
    """Normalize ``{student_name: teacher_name}``, ``[(s, t), ...]`` or ``["name", ...]`` (same on both)."""
    if pairs is None:
        return []
    if isinstance(pairs, Mapping):
        return [(str(s), str(t)) for s, t in pairs.items()]
    out: list[tuple[str, str]] = []
    for p in pairs:
        if isinstance(p, str):
            out.append((p, p))
        elif isinstance(p, (tuple, list)) and len(p) == 2:
            out.append((str(p[0]), str(p[1])))
        else:
            raise InvalidTypeError(f"feature pair {p!r} must be a module name or a (student, teacher) pair of names")
    return out


class FeatureRecorder:
    """Forward hooks that keep the latest output of named modules."""

    def __init__(self, model: nn.Module, names: list[str], role: str):
        modules = dict(model.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            sample = ", ".join(list(modules)[1:8])
            raise InvalidArgumentError(f"{role} has no module named {missing}; module names look like: {sample}")
        self.values: dict[str, torch.Tensor] = {}
        self._handles = [modules[n].register_forward_hook(self._hook(n)) for n in names]

    def _hook(self, name: str):
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            self.values[name] = logits_of(output)

        return hook

    def pop(self, name: str) -> torch.Tensor:
        return self.values.pop(name)

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self.values.clear()


def _channels(t: torch.Tensor) -> int:
    """The feature dimension: channels (dim 1) of a conv map, the last dim of anything else."""
    return t.shape[1] if t.ndim == 4 else t.shape[-1]


def make_projection(student_feature: torch.Tensor, teacher_feature: torch.Tensor) -> nn.Module:
    """Identity where widths match, else a learned 1x1 conv (conv maps) or linear layer (last dim)."""
    cs, ct = _channels(student_feature), _channels(teacher_feature)
    if cs == ct:
        return nn.Identity()
    if student_feature.ndim == 4:
        return nn.Conv2d(cs, ct, 1, bias=False)
    return nn.Linear(cs, ct, bias=False)


def feature_loss(projected: torch.Tensor, teacher_feature: torch.Tensor, where: str) -> torch.Tensor:
    if projected.shape != teacher_feature.shape:
        raise InvalidArgumentError(
            f"feature pair {where}: projected student feature {tuple(projected.shape)} does not match the "
            f"teacher feature {tuple(teacher_feature.shape)}; pick modules whose outputs differ only in width"
        )
    return F.mse_loss(projected.float(), teacher_feature.float())
