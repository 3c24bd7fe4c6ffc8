"""The int8 (dynamic) model as safetensors: int8 Linear weights with their scales, every other tensor as is.

``torch.ao`` keeps a dynamically quantized Linear's weight in a packed object that only pickle can store.
Here each such weight is written as its int8 values (``NAME.weight.int8``), scale and zero point (per
tensor, or per channel with the axis), and its float bias; parameters and buffers of the other modules
(LayerNorm, embeddings, convs) are written unchanged. Loading quantizes the pruned float architecture
the same way and writes these tensors into it, so the result equals the quantized model the report
measured, with no pickle and without the float Linear weights.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from secateurs.errors import FileFormatError
from secateurs.quantization.dynamic import dynamic_linear, quantize_dynamic_int8

INT8_WEIGHTS = "model.int8.safetensors"
_SUFFIXES = ("weight.int8", "weight.scale", "weight.zero_point", "weight.axis", "bias")


def int8_tensors(qmodel: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors of a dynamically quantized model, as plain (safetensors-friendly) tensors."""
    linear = dynamic_linear()
    out: dict[str, torch.Tensor] = {}
    for path, m in qmodel.named_modules():
        if not isinstance(m, linear):
            continue
        p = f"{path}." if path else ""
        w = m.weight()
        out[p + "weight.int8"] = w.int_repr().contiguous()
        if w.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            out[p + "weight.scale"] = torch.tensor([w.q_scale()], dtype=torch.float64)
            out[p + "weight.zero_point"] = torch.tensor([w.q_zero_point()], dtype=torch.int64)
        else:
            out[p + "weight.scale"] = w.q_per_channel_scales().to(torch.float64).contiguous()
            out[p + "weight.zero_point"] = w.q_per_channel_zero_points().to(torch.int64).contiguous()
            out[p + "weight.axis"] = torch.tensor([w.q_per_channel_axis()], dtype=torch.int64)
        if m.bias() is not None:
            out[p + "bias"] = m.bias().detach().contiguous()
    for name, t in [*qmodel.named_parameters(), *qmodel.named_buffers()]:
        out[name] = t.detach().cpu().contiguous().clone()
    return out


def _qweight(tensors: dict[str, torch.Tensor], p: str) -> torch.Tensor:
    values, scale, zero = tensors[p + "weight.int8"], tensors[p + "weight.scale"], tensors[p + "weight.zero_point"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if p + "weight.axis" in tensors:
            axis = int(tensors[p + "weight.axis"][0])
            return torch._make_per_channel_quantized_tensor(values, scale, zero, axis)
        return torch._make_per_tensor_quantized_tensor(values, float(scale[0]), int(zero[0]))


def load_int8_(float_model: nn.Module, tensors: dict[str, torch.Tensor], source: Any) -> nn.Module:
    """Quantize ``float_model`` (the pruned architecture) and write ``tensors`` (from :func:`int8_tensors`) into it."""
    qmodel = quantize_dynamic_int8(float_model)
    linear = dynamic_linear()
    expected: set[str] = set()
    for path, m in qmodel.named_modules():
        if isinstance(m, linear):
            p = f"{path}." if path else ""
            if p + "weight.int8" not in tensors:
                raise FileFormatError(f"{source} has no int8 weight for Linear {path!r}")
            try:
                qw = _qweight(tensors, p)
            except (KeyError, IndexError, ValueError, TypeError, RuntimeError) as exc:  # missing scale, bad axis
                raise FileFormatError(f"{source}: the int8 weight of {path!r} is incomplete or malformed "
                                      f"({type(exc).__name__}: {str(exc)[:100]})") from None
            if tuple(qw.shape) != tuple(m.weight().shape):
                raise FileFormatError(f"{source}: int8 weight of {path!r} has shape {list(qw.shape)}, the pruned model "
                                      f"expects {list(m.weight().shape)}")
            try:
                m.set_weight_bias(qw, tensors.get(p + "bias"))
            except (RuntimeError, TypeError, ValueError) as exc:
                raise FileFormatError(f"{source}: the int8 weight or bias of {path!r} does not fit "
                                      f"({str(exc)[:100]})") from None
            expected.update(p + s for s in _SUFFIXES if p + s in tensors)
    with torch.no_grad():
        for name, t in [*qmodel.named_parameters(), *qmodel.named_buffers()]:
            if name not in tensors or tensors[name].shape != t.shape or tensors[name].is_floating_point() != \
                    t.is_floating_point():
                raise FileFormatError(f"{source}: {name!r} is missing or has the wrong shape or kind")
            t.copy_(tensors[name])
            expected.add(name)
    unexpected = sorted(set(tensors) - expected)
    if unexpected:
        raise FileFormatError(f"{source} holds tensors this model does not have: {unexpected[:5]}")
    return qmodel
