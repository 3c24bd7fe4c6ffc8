"""2:4 sparsity masks next to the weights: ``sparsity.safetensors`` (bool tensors) + a manifest entry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from secateurs.errors import FileFormatError

MASKS = "sparsity.safetensors"


def write_masks(path: Path, result: Any) -> dict[str, Any]:
    """Write ``result.masks`` (a ``SparsityResult``) and return the manifest entry describing them."""
    from safetensors.torch import save_file

    tensors = {name: m.detach().to("cpu", torch.bool).contiguous() for name, m in result.masks.items()}
    save_file(tensors, str(path), metadata={"format": "secateurs-masks", "pattern": "2:4"})
    return {"pattern": "2:4", "method": result.method, "file": MASKS, "layers": len(tensors),
            "sparsity": result.sparsity, "skipped": dict(result.skipped)}


def read_masks_file(path: Path, shapes: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    """Masks from ``path``, each checked: a bool tensor, a known weight of the right shape, exactly 2 of every 4 kept."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from secateurs.sparsity.masks import is_n_of_m

    try:
        masks = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise FileFormatError(f"{path} is not a readable safetensors file ({exc})") from None
    for name, m in masks.items():
        if name not in shapes:
            raise FileFormatError(f"{path}: mask {name!r} names no tensor of the pruned model")
        if m.dtype != torch.bool or list(m.shape) != list(shapes[name]):
            raise FileFormatError(f"{path}: mask {name!r} is {m.dtype} {list(m.shape)}, expected torch.bool {shapes[name]}")
        if not is_n_of_m(m):
            raise FileFormatError(f"{path}: mask {name!r} does not keep exactly 2 of every 4 input weights")
    return masks
