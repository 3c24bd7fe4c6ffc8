"""2:4 semi-structured sparsity for Linear layers: masks, scores, CUDA conversion."""

from secateurs.sparsity.convert import to_semi_structured_, unsupported_reason
from secateurs.sparsity.masks import is_n_of_m, n_of_m_mask
from secateurs.sparsity.scores import METHODS, register_method
from secateurs.sparsity.semi_structured import (
    LayerSparsity,
    SparsityResult,
    apply_masks_,
    plan_2to4,
    sparsify_2to4,
)

__all__ = ["METHODS", "LayerSparsity", "SparsityResult", "apply_masks_", "is_n_of_m", "n_of_m_mask", "plan_2to4",
           "register_method", "sparsify_2to4", "to_semi_structured_", "unsupported_reason"]
