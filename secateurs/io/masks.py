"""2:4 sparsity masks next to the weights: ``sparsity.safetensors`` (bool tensors) + a manifest entry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from secateurs.errors import FileFormatError

MASKS = "sparsity.safetensors"


def write_masks(path: Path, result: Any) -> dict[str, Any]:
    """Write ``result.masks`` (a ``SparsityResult``) and return the manifest entry describing them."""
    from safetensors.torch import save_file

    tensors = {name: m.detach().to("cpu", torch.bool).contiguous() for name, m in result.masks.items()}
    in_dims = {name: in_dim_of(result, name) for name in tensors}
    save_file(tensors, str(path), metadata={"format": "secateurs-masks", "pattern": "2:4", "in_dims": json.dumps(in_dims)})
    return {"pattern": "2:4", "method": result.method, "file": MASKS, "layers": len(tensors),
            "sparsity": result.sparsity, "skipped": dict(result.skipped)}


def in_dim_of(result: Any, name: str) -> int:
    """Input dim of mask ``name``: 1 for (out, in) weights, 0 for transposed (Hugging Face Conv1D) ones."""
    path = name[: -len(".weight")] if name.endswith(".weight") else ""
    layer = next((x for x in result.layers if x.name == path), None)
    return int(getattr(layer, "in_dim", 1)) if layer is not None else 1


def read_masks_file(path: Path, shapes: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    """Masks from ``path``, each checked: a bool tensor, a known weight of the right shape, exactly 2 of every 4 kept."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    from secateurs.sparsity.masks import is_n_of_m

    try:
        masks = load_file(str(path))
        with safe_open(str(path), "pt") as f:
            metadata = f.metadata() or {}
        in_dims = json.loads(metadata.get("in_dims", "{}"))
    except (SafetensorError, OSError, ValueError, RuntimeError, RecursionError) as exc:
        raise FileFormatError(f"{path} is not a readable safetensors file ({str(exc)[:200]})") from None
    if not isinstance(in_dims, dict) or not all(v in (0, 1) and not isinstance(v, bool) for v in in_dims.values()):
        raise FileFormatError(f"{path}: the metadata 'in_dims' must map mask names to 0 or 1")
    for name, m in masks.items():
        if name not in shapes:
            raise FileFormatError(f"{path}: mask {name!r} names no tensor of the pruned model")
        if m.dtype != torch.bool or list(m.shape) != list(shapes[name]):
            raise FileFormatError(f"{path}: mask {name!r} is {m.dtype} {list(m.shape)}, expected torch.bool {shapes[name]}")
        if not is_n_of_m(m, in_dim=int(in_dims.get(name, 1))):
            raise FileFormatError(f"{path}: mask {name!r} does not keep exactly 2 of every 4 input weights")
    return masks
