"""Per module type: which activation dim holds channels and which weight dims index them.

One small registry, found through the class MRO, so supporting a new layer type touches one entry.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from secateurs.graph.ops import CONV, CONV_T, CONV_T_LAST, EMBEDDING, LINEAR, NORM_C, NORM_LAST, Layout
from secateurs.registry import Registry

__all__ = ["LAYOUTS", "Layout", "layout_for", "register_layout"]


LAYOUTS: Registry[Layout] = Registry("calibration layout")
#: instance attribute holding the layout of a torch.export program's weight holder (calibration.program_taps)
LAYOUT_ATTR = "_secateurs_layout"


def register_layout(*types: type | str) -> Callable[[Layout], Layout]:
    """Register a layout for module classes, or for ``"pkg.mod.QualName"`` of classes of optional packages
    (never imported here)."""
    return LAYOUTS.register(*types)


register_layout(nn.Linear)(LINEAR)
register_layout(nn.Conv1d, nn.Conv2d, nn.Conv3d)(CONV)
register_layout(nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)(CONV_T)
register_layout(nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)(NORM_C)
register_layout(nn.LayerNorm)(NORM_LAST)
register_layout(nn.Embedding)(EMBEDDING)


# Hugging Face GPT-2 style Conv1D: weight is (in_features, out_features)
register_layout("transformers.pytorch_utils.Conv1D")(CONV_T_LAST)


def layout_for(module: nn.Module) -> Layout | None:
    marked = module.__dict__.get(LAYOUT_ATTR)
    if marked is not None:
        return marked  # type: ignore[no-any-return]
    return LAYOUTS.for_type(type(module))


def member_side(module: nn.Module, param: str, dim: int) -> str | None:
    """'in' when (param, dim) indexes the module's input channels, 'out' for output channels, else None."""
    layout = layout_for(module)
    if layout is None:
        return None
    if param == "bias" and dim == 0:
        return "out"
    if param != "weight":
        return None
    if dim == layout.weight_in:
        return "in"
    if dim == layout.weight_out:
        return "out"
    return None
