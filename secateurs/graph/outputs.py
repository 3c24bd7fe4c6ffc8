"""Flatten model outputs (tensor, tuple, dict, Hugging Face ModelOutput) into a list of tensors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch


def flat_tensors(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, Mapping):
        return [t for v in out.values() for t in flat_tensors(v)]
    if isinstance(out, (tuple, list)):
        return [t for v in out for t in flat_tensors(v)]
    if hasattr(out, "to_tuple"):
        return flat_tensors(out.to_tuple())
    return []
