"""The one place that reads version-dependent ``node.meta`` keys of exported graphs."""

from __future__ import annotations

from typing import Any

import torch
import torch.fx


def tensor_shape(value: Any) -> tuple[int, ...] | None:
    """Static shape of a fake/real tensor value, or None when the value is not a tensor."""
    if isinstance(value, torch.Tensor):
        return tuple(int(s) for s in value.shape)
    return None


def tensor_dtype(value: Any) -> torch.dtype | None:
    """dtype of a fake/real tensor value (the first of a tuple), or None when it is not a tensor."""
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    return value.dtype if isinstance(value, torch.Tensor) else None


def node_value(node: torch.fx.Node) -> Any:
    """The example value recorded for a node (a FakeTensor, a tuple of them, a scalar or None)."""
    return node.meta.get("val", node.meta.get("example_value"))


def module_scope(node: torch.fx.Node) -> tuple[str, str]:
    """(module path, module class name) of the innermost module that produced ``node``."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "", ""
    path, cls = list(stack.values())[-1]
    type_name = cls if isinstance(cls, str) else getattr(cls, "__qualname__", str(cls))
    return str(path).replace("L['self'].", "").replace("L['self']", ""), type_name.rsplit(".", 1)[-1]
