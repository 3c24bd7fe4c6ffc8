"""What a forward pass returns, as named leaves, and how two such results are compared.

Every leaf of the output structure takes part: tensors, and Python numbers (a count computed in forward())
as 0-d tensors. Floating (and complex) outputs are compared with a tolerance of their own dtype, the error of
each element scaled by the magnitude of its own column (the largest ``|value|`` sharing its index in the last
dimension), so a small-valued field (probabilities) is never measured against a large one (pixel boxes) of the
same output, nor against another output. Integer and bool outputs must be equal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._pytree import keystr, tree_flatten_with_path

#: relative tolerance of each floating dtype (the least precise one sets a plan's default)
TOLERANCE = {torch.float64: 1e-8, torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 3e-2}
#: a column's scale is at least this fraction of the largest |value| of its output, so the rounding noise of a
#: near-zero element (a sum whose terms cancel) is not read as an error; half precision keeps the whole output's
#: scale, as its rounding noise is within a few times its tolerance
COLUMN_FLOOR = {torch.float16: 1.0, torch.bfloat16: 1.0}
DEFAULT_COLUMN_FLOOR = 0.05
#: and at least this absolute value (an all-zero reference output)
ABSOLUTE_FLOOR = 1e-6


def named_leaves(out: Any) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(label -> tensor for every tensor or Python-number leaf, labels of leaves that cannot be compared)."""
    leaves, _ = tree_flatten_with_path(out)
    named: dict[str, torch.Tensor] = {}
    skipped: list[str] = []
    for path, leaf in leaves:
        label = "output" + keystr(path)
        if isinstance(leaf, torch.Tensor):
            named[label] = leaf
        elif isinstance(leaf, (bool, int, float)):
            named[label] = torch.tensor(leaf, dtype=torch.float64 if isinstance(leaf, float) else None)
        elif leaf is not None and not isinstance(leaf, str):
            skipped.append(f"{label} ({type(leaf).__name__})")
    return named, skipped


def is_float(t: torch.Tensor) -> bool:
    return t.is_floating_point() or t.is_complex()


def tolerance_for(t: torch.Tensor) -> float:
    return TOLERANCE.get(t.dtype, 1e-4) if t.is_floating_point() else (1e-4 if t.is_complex() else 0.0)


def default_tolerance(outputs: list[torch.Tensor]) -> float:
    """Relative tolerance of the least precise floating output (float32: 1e-4, bfloat16: 3e-2)."""
    return max((tolerance_for(t) for t in outputs if is_float(t)), default=1e-4)


@dataclass
class OutputCheck:
    """How one output of the pruned model compares with the masked original's."""

    label: str
    exact_kind: bool  # integer/bool: compared for equality
    max_abs: float
    rel: float  # largest scaled error (floats); 0 or inf (integers/bool)
    tolerance: float
    mismatches: int = 0  # integer/bool elements that differ

    @property
    def ok(self) -> bool:
        return self.rel <= self.tolerance  # NaN fails too

    def describe(self) -> str:
        if self.exact_kind:
            return f"{self.label}: {self.mismatches} integer/bool element(s) differ (max abs difference {self.max_abs:.3g})"
        return (f"{self.label}: max abs error {self.max_abs:.3g}, relative {self.rel:.3g} > tolerance {self.tolerance:g}")


def _float_check(label: str, a: torch.Tensor, b: torch.Tensor, tolerance: float) -> OutputCheck:
    if a.is_complex():
        a, b = torch.view_as_real(a), torch.view_as_real(b)
    a64, b64 = a.detach().to(torch.float64), b.detach().to(torch.float64)
    same = (a64 == b64) | (a64.isnan() & b64.isnan())  # equal infinities and NaNs agree
    diff = torch.where(same, torch.zeros_like(a64), (a64 - b64).abs())
    magnitude = a64.abs().nan_to_num(0.0, posinf=0.0, neginf=0.0)
    column = magnitude.amax(dim=tuple(range(a64.ndim - 1)), keepdim=True) if a64.ndim > 1 else magnitude
    floor = max(COLUMN_FLOOR.get(a.dtype, DEFAULT_COLUMN_FLOOR) * float(magnitude.max()), ABSOLUTE_FLOOR)
    rel = float((diff / column.clamp_min(floor)).max())
    return OutputCheck(label, False, float(diff.max()), rel, tolerance)


def _exact_check(label: str, a: torch.Tensor, b: torch.Tensor) -> OutputCheck:
    differ = a != b
    n = int(differ.sum())
    max_abs = float((a.to(torch.float64) - b.to(torch.float64)).abs().max()) if n else 0.0
    return OutputCheck(label, True, max_abs, math.inf if n else 0.0, 0.0, n)


def check_outputs(reference: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor],
                  tolerance: float | None) -> list[OutputCheck]:
    """One check per output (same labels, shapes and dtypes assumed); ``tolerance`` overrides the dtype's."""
    checks = []
    for label, a in reference.items():
        b = outputs[label]
        if a.numel() == 0:
            continue
        if is_float(a):
            checks.append(_float_check(label, a, b, tolerance_for(a) if tolerance is None else tolerance))
        else:
            checks.append(_exact_check(label, a, b))
    return checks


def layout_difference(reference: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor]) -> str | None:
    """Why two results cannot be compared element by element (labels, shapes or dtypes differ), or None."""
    if list(reference) != list(outputs):
        return f"pruned model returns outputs {list(outputs)}, the original {list(reference)}"
    for label, a in reference.items():
        b = outputs[label]
        if a.shape != b.shape:
            got = {k: tuple(v.shape) for k, v in outputs.items()}
            want = {k: tuple(v.shape) for k, v in reference.items()}
            return f"pruned model output shapes {got} differ from the original {want}"
        if a.dtype != b.dtype:
            return f"pruned model {label} has dtype {b.dtype}, the original {a.dtype}"
    return None
