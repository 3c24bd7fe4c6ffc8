"""Per-group score normalisation, so global ranking compares units of differently scaled groups.

- ``mean`` (default): divide by the group's mean score. Scale-free across layers of different widths,
  weight scales and criteria, keeps zero at zero and the ratios between units; a unit at 1.0 is an
  average unit of its group. The same default as Torch-Pruning's global pruning.
- ``max``: divide by the group's largest score (sensitive to one outlier unit).
- ``standardize``: (s - mean) / std; ranks by how unusual a unit is within its group, so every group
  loses units at a similar rate when the distributions look alike.
- ``none``: raw scores (for criteria already comparable across groups, such as LAMP).
"""

from __future__ import annotations

import numpy as np

from secateurs.config import NORMALIZERS
from secateurs.errors import InvalidArgumentError


def check_normalize(how: str) -> str:
    if how not in NORMALIZERS:
        raise InvalidArgumentError(f"unknown normalize={how!r}; choose one of {', '.join(NORMALIZERS)}")
    return how


def normalize(scores: np.ndarray, how: str) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if how == "none" or len(s) == 0:
        return s
    if how == "standardize":
        std = s.std()
        return (s - s.mean()) / std if std > 0 else np.zeros_like(s)
    denom = np.abs(s).mean() if how == "mean" else np.abs(s).max()
    return s / denom if denom > 0 else np.zeros_like(s)
