"""Analyses cached within a process, keyed by what the captured graph depends on.

A capture (``torch.export``) costs far more than everything after it, and latency bisection, plan families,
sensitivity scans, iterative schedules and repeated ``plan`` calls on copies of one architecture capture the
same graph again and again. The graph depends on the module tree (classes, forward overrides, plain
attributes that forward reads), on the parameters' and buffers' names, shapes, dtypes and devices, on the
example inputs' shapes, dtypes and plain values, and on the registered rules. The key hashes all of that;
anything it cannot describe safely (an attribute holding an object of unknown kind) makes the model
uncacheable rather than risk a stale graph. ``SECATEURS_CAPTURE_CACHE=0`` turns the cache off; ``clear()``
empties it. Cached analyses hold no weights (captured values are fake tensors).
"""

from __future__ import annotations

import enum
import functools
import hashlib
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import torch

_MAX = 8
_CACHE: OrderedDict[str, Any] = OrderedDict()
_SKIP = {"_parameters", "_buffers", "_modules", "training", "_forward_hooks", "_forward_pre_hooks",
         "_backward_hooks", "_backward_pre_hooks", "_state_dict_hooks", "_state_dict_pre_hooks",
         "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks", "_non_persistent_buffers_set",
         "_is_full_backward_hook", "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs",
         "_forward_hooks_always_called"}


class _Unhashable(Exception):
    pass


def enabled() -> bool:
    return os.environ.get("SECATEURS_CAPTURE_CACHE", "1") not in ("0", "false", "no", "off")


def clear() -> None:
    _CACHE.clear()


def _plain(value: Any, depth: int = 0) -> str:
    """A stable description of a value forward may read, or _Unhashable."""
    if depth > 4:
        raise _Unhashable
    if value is None or isinstance(value, (bool, int, float, str, bytes, torch.dtype, torch.device, enum.Enum)):
        return f"{type(value).__name__}:{value!r}"
    if isinstance(value, (tuple, list, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return f"{type(value).__name__}[" + ",".join(_plain(v, depth + 1) for v in items) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{_plain(k, depth + 1)}:{_plain(v, depth + 1)}" for k, v in sorted(
            value.items(), key=lambda kv: repr(kv[0]))) + "}"
    if isinstance(value, type) or callable(value) and hasattr(value, "__qualname__") and hasattr(value, "__module__"):
        return f"fn:{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', '')}:{id(value)}"
    if isinstance(value, functools.partial):
        return f"partial:{_plain(value.func, depth + 1)}:{_plain(value.args, depth + 1)}:{_plain(value.keywords, depth + 1)}"
    to_dict = getattr(value, "to_diff_dict", None)  # Hugging Face configs
    if callable(to_dict):
        return f"config:{type(value).__qualname__}:{_plain(to_dict(), depth + 1)}"
    if isinstance(value, torch.Tensor):  # a tensor attribute outside parameters and buffers
        return f"tensor:{tuple(value.shape)}:{value.dtype}:{value.device.type}"
    raise _Unhashable


def _describe_input(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"T{tuple(value.shape)}:{value.dtype}:{value.device.type}"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}={_describe_input(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (tuple, list)):
        return "[" + ",".join(_describe_input(v) for v in value) + "]"
    return _plain(value)


def _rules_digest() -> str:
    """The registries a capture's analysis reads: coupling rules, literal finders, slice refreshers, compute ops."""
    from secateurs.graph.literals import FINDERS
    from secateurs.graph.ops import OPS
    from secateurs.graph.rules import RULES
    from secateurs.graph.rules.concat import SLICE_REFRESHERS

    return hashlib.sha256("|".join(r.digest() for r in (RULES, FINDERS, SLICE_REFRESHERS, OPS)).encode()).hexdigest()


def structure_key(model: torch.nn.Module, example_inputs: Any) -> str | None:
    """The cache key of ``model`` on ``example_inputs``, or None when the model cannot be described safely."""
    h = hashlib.sha256()
    try:
        h.update(f"registries:{_rules_digest()};inputs:{_describe_input(example_inputs)};".encode())
        for name, m in model.named_modules(remove_duplicate=False):
            cls = type(m)
            h.update(f"|{name}:{cls.__module__}.{cls.__qualname__}:{id(cls)}".encode())
            for attr in sorted(set(m.__dict__) - _SKIP):
                h.update(f";{attr}={_plain(m.__dict__[attr])}".encode())
            for kind, table in (("p", m._parameters), ("b", m._buffers)):
                for k, t in table.items():
                    desc = "None" if t is None else f"{tuple(t.shape)}:{t.dtype}:{t.device.type}:{t.requires_grad}"
                    h.update(f";{kind}.{k}={desc}:{k in m._non_persistent_buffers_set}".encode())
    except _Unhashable:
        return None
    return h.hexdigest()


def cached(model: torch.nn.Module, example_inputs: Any, build: Callable[[], Any]) -> Any:
    """``build()``'s result for this model structure and inputs, built once per process (LRU of 8)."""
    key = structure_key(model, example_inputs) if enabled() else None
    if key is None:
        return build()
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    value = build()
    _CACHE[key] = value
    while len(_CACHE) > _MAX:
        _CACHE.popitem(last=False)
    return value
