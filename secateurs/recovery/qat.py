"""``recover(..., qat="int8")``: fine-tune with int8 fake quantization (PT2E ``prepare_qat_pt2e``, torchao).

The student is captured in training mode with fake quantization inserted, and that graph is trained by the same
loop as any student. Afterwards its parameters and batch norm statistics are copied back into the student
(which stays a plain float model) and the trained graph is attached to it, so ``sc.convert_int8(student, x)``
returns the int8 model with the ranges learned during training.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

from torch import nn

from secateurs.errors import InvalidArgumentError
from secateurs.quantization import qat as Q
from secateurs.recovery.config import RecoverConfig, RecoverResult
from secateurs.recovery.trainable import split_batch

#: the PT2E quantizer QAT targets: the x86 one, whose int8 model runs on this host's oneDNN kernels
BACKEND = "x86"


def first_inputs(data: Iterable[Any]) -> Any:
    """The inputs of the first batch, read from a fresh iterator (``data`` must be re-iterable)."""
    it = iter(data)
    if it is data:
        raise InvalidArgumentError("qat='int8' reads the first batch to capture the model, then trains from the start: "
                                   "pass a list or a DataLoader, not a one-shot iterator")
    try:
        batch = next(it)
    except StopIteration:
        raise InvalidArgumentError("data yielded no batches") from None
    return split_batch(batch)[0]


def recover_qat(train: Callable[..., RecoverResult], student: nn.Module, data: Iterable[Any], teacher: nn.Module | None,
                loss: Any, cfg: RecoverConfig, **kwargs: Any) -> RecoverResult:
    """Train the fake-quantized graph of ``student`` with ``train`` (the ``recover`` loop) and attach it."""
    if cfg.feature_pairs:
        raise InvalidArgumentError("feature_pairs cannot be combined with qat='int8': the fake-quantized graph has no "
                                   "submodules to hook; distil the logits only")
    prepared = Q.prepare_qat(student, first_inputs(data), BACKEND)
    flags = [(m, m.training) for m in student.modules()]
    result = train(prepared, data, teacher, loss, config=dataclasses.replace(cfg, qat=None), **kwargs)
    Q.sync_weights_(student, prepared)
    for m, flag in flags:
        m.training = flag
    Q.attach(student, prepared, BACKEND)
    return result
