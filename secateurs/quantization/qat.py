"""Quantization-aware training state and the int8 conversion of a trained (or float) model.

``prepare_qat`` captures a model in training mode and inserts PT2E fake quantization (``prepare_qat_pt2e``):
the graph it returns trains like the model (same parameters, batch norm and dropout behaviour switched by
``train()``/``eval()``) while rounding weights and activations as int8 inference will. ``recover(qat="int8")``
trains that graph and attaches it to the model; :func:`convert_int8` turns it (or, for a model trained without
QAT, a post-training calibration) into the int8 model.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from secateurs.errors import InvalidArgumentError
from secateurs.graph.capture import ExampleInputs
from secateurs.quantization import pt2e

_ATTR = "_secateurs_qat"


@dataclass
class QatState:
    """The fake-quantized training graph of a model and the backend its quantizer targets (a plain object: it adds
    nothing to the model's ``state_dict``)."""

    prepared: torch.fx.GraphModule
    backend: str


def prepare_qat(model: nn.Module, example_inputs: ExampleInputs, backend: str = "x86") -> torch.fx.GraphModule:
    """The fake-quantized training graph of ``model`` (captured in training mode); ``train()``/``eval()`` work on it."""
    flags = [(m, m.training) for m in model.modules()]
    model.train()
    try:
        prepared = pt2e.prepare(model, example_inputs, backend, qat=True)
    finally:
        for m, flag in flags:
            m.training = flag
    return pt2e.allow_train_eval_(prepared)


def attach(model: nn.Module, prepared: torch.fx.GraphModule, backend: str) -> None:
    """Record ``prepared`` as the QAT state of ``model`` (read by :func:`convert_int8`)."""
    model.__dict__[_ATTR] = QatState(prepared, backend)


def qat_state(model: nn.Module) -> QatState | None:
    state = model.__dict__.get(_ATTR)
    return state if isinstance(state, QatState) else None


def sync_weights_(model: nn.Module, prepared: torch.fx.GraphModule) -> int:
    """Copy the trained parameters and buffers of ``prepared`` into ``model`` where names and shapes match (export
    may give the graph its own tensors); returns how many were copied."""
    mine = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    theirs = {**dict(prepared.named_parameters()), **dict(prepared.named_buffers())}
    n = 0
    with torch.no_grad():
        for name, t in mine.items():
            src = theirs.get(name)
            if src is not None and src.shape == t.shape and src.dtype == t.dtype:
                if src.data_ptr() != t.data_ptr():
                    t.copy_(src)
                n += 1
    return n


def convert_int8(model: nn.Module, example_inputs: ExampleInputs, *, calibration: Iterable[Any] | None = None,
                 backend: str | None = None) -> nn.Module:
    """The int8 model of ``model``: after ``recover(..., qat="int8")`` and without ``calibration``, the converted
    fake-quantized graph (its learned ranges and weights); otherwise post-training static quantization calibrated on
    ``calibration`` batches (default: the example input alone, which gives poor ranges: pass real batches).
    ``model`` is not changed.

    The result runs on the backend's int8 kernels (x86: oneDNN) and saves with ``sc.save(..., int8=...)``."""
    from secateurs.quantization.static import finish, prepare_convert

    state = qat_state(model)
    if state is None or calibration is not None:
        batches = list(calibration) if calibration is not None else [example_inputs]
        if not batches:
            raise InvalidArgumentError("convert_int8 needs at least one calibration batch")
        b = backend or "x86"
        return finish(prepare_convert(model, example_inputs, batches, b), example_inputs, b, "ptq")
    if backend is not None and backend != state.backend:
        raise InvalidArgumentError(f"this model was trained with fake quantization for {state.backend!r}; it cannot be "
                                   f"converted for {backend!r} (recover again with that backend, or omit backend=)")
    prepared = copy.deepcopy(state.prepared)
    pt2e.eval_mode_(prepared)
    return finish(pt2e.convert(prepared), example_inputs, state.backend, "qat")
