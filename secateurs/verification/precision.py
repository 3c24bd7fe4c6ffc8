"""Rounding or a real difference? The same comparison again in float64.

A float32 comparison of the pruned model with the masked original sums the same products in a different order
(fewer terms, other blocking), so their outputs differ by rounding, which grows with depth: a 32-block ConvMixer
ends at a few 1e-4 of its output, above float32's tolerance of 1e-4, with nothing wrong. When an exact
comparison fails numerically (shapes and layout fine), both models are copied to float64 and compared again with
float64's tolerance (1e-8): rounding shrinks by about 2^-29 there, a real difference (a unit not removed as
masked, a wrong attribute) stays as large as it was. The float64 run decides; when it cannot be made (not a
float32 model, too big to copy twice, a forward() that breaks in float64) the float32 failure stands.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_map

from secateurs.graph.capture import ExampleInputs

#: models whose parameters and buffers take more than this are not copied twice for the check
MAX_BYTES = 2 * 1024**3


def _double(value: Any) -> Any:
    return value.to(torch.float64) if isinstance(value, torch.Tensor) and value.dtype == torch.float32 else value


def applicable(model: nn.Module, result: Any) -> bool:
    """Whether a failed ``result`` of ``model`` (a ``VerifyResult``) may be rounding a float64 run can tell apart:
    an exact comparison that ran and failed on values only, of a float32 model small enough to copy twice."""
    if result.ok or result.mode != "exact" or not result.shapes_ok or result.max_abs_error is None:
        return False
    tensors = list(model.state_dict().values())
    floats = [t for t in tensors if t.is_floating_point()]
    if not floats or any(t.dtype != torch.float32 or t.is_meta for t in floats):
        return False
    return sum(t.numel() * t.element_size() for t in tensors) <= MAX_BYTES


def in_float64(model: nn.Module) -> nn.Module:
    """A float64 copy of ``model``."""
    return copy.deepcopy(model).double()


def double_inputs(example_inputs: ExampleInputs) -> Any:
    """``example_inputs`` with every float32 tensor in float64."""
    return tree_map(_double, example_inputs)


def settled(failed: Any, in_float64: Any) -> Any:
    """The verification result of a float32 comparison ``failed`` that the float64 one ``in_float64`` passed."""
    result = copy.copy(in_float64)
    result.reexported = failed.reexported
    if failed.reexported is False:
        result.ok = False
        result.message = "pruned model runs but torch.export can no longer capture it"
        return result
    result.message = (f"verified in float64: the pruned model matches the masked original within float64's "
                      f"tolerance (max relative error {in_float64.rel_error:.2g}); the float32 difference (max "
                      f"relative {failed.rel_error:.2g}, max abs {failed.max_abs_error:.2g}) is rounding")
    result.notes = list(dict.fromkeys(failed.notes + in_float64.notes))
    return result
