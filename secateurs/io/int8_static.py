"""The statically quantized (FX) int8 model as safetensors, and its rebuild without pickle.

A model from ``prepare_fx``/``convert_fx`` keeps int8 conv weights as quantized tensors, Linear weights in
packed tuples and activation scales/zero points as buffers: only pickle stores that state as it is. Here
every quantized tensor is written as its int8 values with scale and zero point (per channel: plus the
axis), tuples element by element, dtypes in the file's metadata. Loading runs ``prepare_fx``/``convert_fx``
on the pruned float model again (no calibration: every range is then overwritten from the file), loads the
decoded state strictly, and compares the output on the recorded example input with the one stored at save
time, so a model rebuilt differently (another torch, another backend) is an error, not a silent change.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import torch
from torch import nn

from secateurs.errors import FileFormatError, InvalidArgumentError

_Q = "::q"  # key suffixes: <key>::q.int8 / .scale / .zero_point / .axis for a quantized tensor
_ITEM = "::item"  # <key>::item<i> for the elements of a tuple (packed Linear parameters)
CHECK = "::check_output"  # the first output on the example input, saved to compare after the rebuild
TOLERANCE = 1e-4  # relative, against the largest output magnitude


def _encode(key: str, value: Any, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    if isinstance(value, torch.dtype):
        meta[key] = str(value)
    elif isinstance(value, (tuple, list)):
        meta[key] = f"tuple:{len(value)}"
        for i, item in enumerate(value):
            if item is not None:
                _encode(f"{key}{_ITEM}{i}", item, tensors, meta)
    elif isinstance(value, torch.Tensor) and value.is_quantized:
        tensors[f"{key}{_Q}.int8"] = value.int_repr().contiguous()
        if value.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            tensors[f"{key}{_Q}.scale"] = torch.tensor([value.q_scale()], dtype=torch.float64)
            tensors[f"{key}{_Q}.zero_point"] = torch.tensor([value.q_zero_point()], dtype=torch.int64)
        else:
            tensors[f"{key}{_Q}.scale"] = value.q_per_channel_scales().to(torch.float64).contiguous()
            tensors[f"{key}{_Q}.zero_point"] = value.q_per_channel_zero_points().to(torch.int64).contiguous()
            tensors[f"{key}{_Q}.axis"] = torch.tensor([value.q_per_channel_axis()], dtype=torch.int64)
        meta[key] = f"quantized:{value.dtype}"
    elif isinstance(value, torch.Tensor):
        tensors[key] = value.detach().cpu().contiguous().clone()
    else:
        raise InvalidArgumentError(f"cannot store state entry {key!r} of type {type(value).__name__} without pickle")


def encode(qmodel: nn.Module, example_inputs: Any) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) for safetensors; the metadata records dtypes, tuples and quantized dtypes."""
    from secateurs.graph.capture import normalize_inputs
    from secateurs.graph.outputs import flat_tensors

    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, str] = {}
    for key, value in qmodel.state_dict().items():
        _encode(key, value, tensors, meta)
    args, kwargs = normalize_inputs(example_inputs)
    with torch.inference_mode():
        tensors[CHECK] = flat_tensors(qmodel(*args, **kwargs))[0].detach().float().contiguous()
    return tensors, {"entries": json.dumps(meta)}


def _dtype(name: str) -> torch.dtype:
    """``torch.float32`` from ``"torch.float32"``; nothing but a dtype is looked up."""
    value = getattr(torch, name.removeprefix("torch."), None) if name.startswith("torch.") else None
    if not isinstance(value, torch.dtype):
        raise FileFormatError(f"{name!r} is not a torch dtype")
    return value


def _decode(key: str, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> Any:
    kind = meta.get(key)
    if kind is None:
        return tensors[key]
    if not isinstance(kind, str):
        raise FileFormatError(f"entry {key!r} has kind {kind!r}, not text")
    if kind.startswith("torch."):
        return _dtype(kind)
    if kind.startswith("tuple:"):
        n = int(kind.split(":", 1)[1])
        return tuple(_decode(f"{key}{_ITEM}{i}", tensors, meta) if f"{key}{_ITEM}{i}" in tensors or
                     f"{key}{_ITEM}{i}" in meta else None for i in range(n))
    if not kind.startswith("quantized:"):
        raise FileFormatError(f"entry {key!r} has an unknown kind {kind!r}")
    dtype = _dtype(kind.split(":", 1)[1])
    values, scale, zero = tensors[f"{key}{_Q}.int8"], tensors[f"{key}{_Q}.scale"], tensors[f"{key}{_Q}.zero_point"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if f"{key}{_Q}.axis" in tensors:
            q = torch._make_per_channel_quantized_tensor(values, scale, zero, int(tensors[f"{key}{_Q}.axis"][0]))
        else:
            q = torch._make_per_tensor_quantized_tensor(values, float(scale[0]), int(zero[0]))
    if q.dtype != dtype:
        raise FileFormatError(f"quantized tensor {key!r} decodes to {q.dtype}, the file says {dtype}")
    return q


def top_level_keys(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> list[str]:
    keys = {k.split("::", 1)[0] for k in tensors if k != CHECK} | set(meta)
    return sorted(k for k in keys if "::" not in k)


def rebuild(float_model: nn.Module, tensors: dict[str, torch.Tensor], metadata: dict[str, str], example_inputs: Any,
            backend: str, source: Any) -> nn.Module:
    """The statically quantized model: FX prepare/convert of ``float_model`` (the pruned architecture), then the
    saved state; its output on ``example_inputs`` must match the one recorded at save time."""
    from secateurs.graph.capture import normalize_inputs
    from secateurs.graph.outputs import flat_tensors
    from secateurs.quantization.static_fx import prepare_convert

    try:
        meta = json.loads(metadata.get("entries", "{}"))
    except (ValueError, RecursionError) as exc:
        raise FileFormatError(f"{source}: unreadable metadata ({str(exc)[:100]})") from None
    if not isinstance(meta, dict) or CHECK not in tensors:
        raise FileFormatError(f"{source}: the metadata is not a mapping of entries, or the saved output is missing")
    qmodel = prepare_convert(float_model, example_inputs, [], backend)
    from collections import OrderedDict

    try:
        state = OrderedDict((key, _decode(key, tensors, meta)) for key in top_level_keys(tensors, meta))
    except FileFormatError as exc:
        raise FileFormatError(f"{source}: {exc}") from None
    except (KeyError, IndexError, ValueError, TypeError, RuntimeError) as exc:  # missing parts, bad scales/axes
        raise FileFormatError(f"{source}: a quantized entry is incomplete or malformed ({type(exc).__name__}: "
                              f"{str(exc)[:100]})") from None
    # quantized modules read their state by version (packed Linear parameters since version 3)
    state._metadata = getattr(qmodel.state_dict(), "_metadata", None)  # type: ignore[attr-defined]
    try:
        qmodel.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FileFormatError(f"{source} does not fit the quantized pruned model: {first}") from None
    args, kwargs = normalize_inputs(example_inputs)
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = backend
    try:
        with torch.inference_mode():
            got = flat_tensors(qmodel(*args, **kwargs))[0].float()
    finally:
        torch.backends.quantized.engine = previous
    want = tensors[CHECK]
    err = float((got - want).abs().max()) / max(float(want.abs().max()), 1e-6) if got.shape == want.shape else float("inf")
    if not err <= TOLERANCE:
        raise FileFormatError(f"{source}: the rebuilt int8 model's output differs from the saved one (relative error "
                              f"{err:.3g}); it was saved with another torch version or quantized backend")
    return qmodel
