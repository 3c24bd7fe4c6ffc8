"""BatchNorm, InstanceNorm, LayerNorm, GroupNorm, RMSNorm."""

from __future__ import annotations

from typing import Any

from torch import nn

from secateurs.surgery.registry import register_handler


@register_handler(nn.modules.batchnorm._NormBase)
def batch_norm(m: Any, hints: dict[str, Any]) -> None:
    source = m.weight if m.weight is not None else m.running_mean
    if source is not None:
        m.num_features = source.shape[0]


def _shape_from(m: Any, hints: dict[str, Any]) -> tuple[int, ...]:
    if getattr(m, "weight", None) is not None:
        return tuple(m.weight.shape)
    value = hints.get("normalized_shape", m.normalized_shape)
    return tuple(value) if isinstance(value, (list, tuple)) else (int(value),)


@register_handler(nn.LayerNorm)
def layer_norm(m: Any, hints: dict[str, Any]) -> None:
    m.normalized_shape = _shape_from(m, hints)


@register_handler(nn.RMSNorm)
def rms_norm(m: Any, hints: dict[str, Any]) -> None:
    m.normalized_shape = _shape_from(m, hints)


@register_handler(nn.GroupNorm)
def group_norm(m: Any, hints: dict[str, Any]) -> None:
    m.num_groups = int(hints.get("num_groups", m.num_groups))
    if m.weight is not None:
        m.num_channels = m.weight.shape[0]
