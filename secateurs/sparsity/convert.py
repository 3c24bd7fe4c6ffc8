"""CUDA conversion of 2:4-masked Linear weights with ``torch.sparse.to_sparse_semi_structured`` (guarded).

Each layer is converted only where torch supports it: a CUDA device of compute capability 8.0 or newer,
fp16/bf16 weights, and a shape that is a multiple of the backend's minimum tile (CUTLASS: 32 rows x 64
columns for fp16/bf16; cuSPARSELt: 16 x 16). Every other layer is left dense with the reason recorded.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from secateurs.sparsity.masks import is_n_of_m

_DTYPES = (torch.float16, torch.bfloat16)


def _backend_constraints() -> tuple[str, Any]:
    from torch.sparse import SparseSemiStructuredTensor
    from torch.sparse.semi_structured import (
        SparseSemiStructuredTensorCUSPARSELT,
        SparseSemiStructuredTensorCUTLASS,
    )

    if SparseSemiStructuredTensor._FORCE_CUTLASS:
        return "cutlass", SparseSemiStructuredTensorCUTLASS._DTYPE_SHAPE_CONSTRAINTS
    return "cusparselt", SparseSemiStructuredTensorCUSPARSELT._DTYPE_SHAPE_CONSTRAINTS


def unsupported_reason(weight: torch.Tensor) -> str | None:
    """Why ``weight`` cannot become a semi-structured sparse tensor here, or None when it can."""
    if not weight.is_cuda:
        return f"weight is on {weight.device.type}; semi-structured sparse kernels need CUDA"
    major, minor = torch.cuda.get_device_capability(weight.device)
    if major < 8:
        return f"GPU compute capability {major}.{minor} < 8.0 (no sparse tensor cores)"
    if weight.dtype not in _DTYPES:
        return f"dtype {weight.dtype} (convert the model to float16 or bfloat16 first)"
    backend, constraints = _backend_constraints()
    c = constraints.get(weight.dtype)
    rows, cols = weight.shape
    if c is None:
        return f"{backend} backend does not support {weight.dtype}"
    if rows < c.sparse_min_rows or rows % c.sparse_min_rows or cols < c.sparse_min_cols or cols % c.sparse_min_cols:
        return (f"shape {rows}x{cols} is not a multiple of the {backend} tile "
                f"{c.sparse_min_rows}x{c.sparse_min_cols}")
    if not is_n_of_m(weight.detach() != 0):
        return "weight is not 2:4 sparse (apply the masks first)"
    return None


def to_semi_structured_(model: nn.Module, layers: list[str] | None = None) -> dict[str, str]:
    """Replace 2:4-sparse ``nn.Linear`` weights with ``SparseSemiStructuredTensor`` in place (inference only).

    ``layers``: module paths to try (default: every Linear). Returns ``{path: "converted" | reason}``. The
    converted model can no longer be saved with ``secateurs.save``; save before converting.
    """
    from torch.sparse import to_sparse_semi_structured

    out: dict[str, str] = {}
    for path, module in model.named_modules():
        if not isinstance(module, nn.Linear) or (layers is not None and path not in layers):
            continue
        reason = unsupported_reason(module.weight)
        if reason is None:
            try:
                sparse = to_sparse_semi_structured(module.weight.detach().contiguous())
            except (RuntimeError, NotImplementedError) as exc:
                reason = f"to_sparse_semi_structured failed: {str(exc).splitlines()[0]}"
            else:
                module.weight = nn.Parameter(sparse, requires_grad=False)
                reason = "converted"
        out[path] = reason
    return out
