"""Conv1d/2d/3d and ConvTranspose1d/2d/3d."""

from __future__ import annotations

from typing import Any

from torch import nn

from secateurs.surgery.registry import register_handler


@register_handler(nn.Conv1d, nn.Conv2d, nn.Conv3d)
def conv(m: Any, hints: dict[str, Any]) -> None:
    groups = int(hints.get("groups", m.groups))
    m.groups = groups
    m.out_channels = m.weight.shape[0]
    m.in_channels = m.weight.shape[1] * groups


@register_handler(nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
def conv_transpose(m: Any, hints: dict[str, Any]) -> None:
    groups = int(hints.get("groups", m.groups))
    m.groups = groups
    m.in_channels = m.weight.shape[0]
    m.out_channels = m.weight.shape[1] * groups
