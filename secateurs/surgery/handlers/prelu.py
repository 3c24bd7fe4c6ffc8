"""PReLU with one slope per channel."""

from __future__ import annotations

from typing import Any

from torch import nn

from secateurs.surgery.registry import register_handler


@register_handler(nn.PReLU)
def prelu(m: Any, hints: dict[str, Any]) -> None:
    m.num_parameters = m.weight.shape[0]
