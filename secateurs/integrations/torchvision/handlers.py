"""Surgery handlers for torchvision model modules that read widths or head counts in forward()."""

from __future__ import annotations

from typing import Any

from torchvision.models.googlenet import GoogLeNet
from torchvision.models.inception import Inception3
from torchvision.models.maxvit import RelativePositionalMultiHeadAttention
from torchvision.models.swin_transformer import ShiftedWindowAttention, ShiftedWindowAttentionV2
from torchvision.models.vision_transformer import VisionTransformer

from secateurs.errors import ApplyError
from secateurs.integrations.torchvision.modules import (
    PrunedRelativePositionalMultiHeadAttention,
    PrunedShiftedWindowAttention,
    PrunedShiftedWindowAttentionV2,
)
from secateurs.surgery.registry import register_handler


@register_handler(VisionTransformer)
def vision_transformer(m: Any, hints: dict[str, Any]) -> None:
    m.hidden_dim = m.class_token.shape[-1]  # _process_input reshapes the patch embedding to it


@register_handler(GoogLeNet, Inception3)
def auxiliary_classifiers(m: Any, hints: dict[str, Any]) -> None:
    if getattr(m, "aux1", None) is not None or getattr(m, "AuxLogits", None) is not None:
        raise ApplyError(
            f"{type(m).__name__} has auxiliary classifiers, which run only in training mode: the eval-mode graph "
            "cannot see them, so pruning would leave them at the old widths. Build the model with "
            "aux_logits=False, or drop them first (model.aux_logits = False; model.aux1 = model.aux2 = None for "
            "GoogLeNet, model.AuxLogits = None for Inception-v3)"
        )


def _heads(m: Any, hints: dict[str, Any], inner: int, heads: int) -> tuple[int, int]:
    """(num_heads, head_dim) after pruning, from the rule's hint or a per-head parameter."""
    heads = int(hints.get("num_heads", heads))
    if inner % heads:
        raise ApplyError(f"{type(m).__name__}: q/k/v width {inner} does not split into {heads} heads")
    return heads, inner // heads


@register_handler(ShiftedWindowAttention)
def shifted_window_attention(m: Any, hints: dict[str, Any]) -> None:
    if not hasattr(m, "scale"):  # the stock forward scales q by the original (C // num_heads) ** -0.5
        width = hints.get("shapes_before", {}).get("qkv.weight", m.qkv.weight.shape)[1]
        m.scale = (width // m.num_heads) ** -0.5
    per_head = m.logit_scale if isinstance(m, ShiftedWindowAttentionV2) else m.relative_position_bias_table.T
    m.num_heads, m.head_dim = _heads(m, hints, m.qkv.weight.shape[0] // 3, per_head.shape[0])
    if type(m) is ShiftedWindowAttentionV2:
        m.__class__ = PrunedShiftedWindowAttentionV2
    elif type(m) is ShiftedWindowAttention:
        m.__class__ = PrunedShiftedWindowAttention


@register_handler(RelativePositionalMultiHeadAttention)
def relative_positional_attention(m: Any, hints: dict[str, Any]) -> None:
    m.n_heads, m.head_dim = _heads(m, hints, m.to_qkv.weight.shape[0] // 3, m.relative_position_bias_table.shape[1])
    if type(m) is RelativePositionalMultiHeadAttention:
        m.__class__ = PrunedRelativePositionalMultiHeadAttention
