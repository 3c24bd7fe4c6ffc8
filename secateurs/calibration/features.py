"""Input *features* of a consumer layer: the vectors its weight multiplies, one row per token or pixel.

A Linear reads ``in_features`` values per token; a k×k convolution reads ``C_in·k·k`` values per output
position (an unfolded patch, channel-major like ``weight.reshape(out, -1)``). Reconstruction (least
squares, bias compensation) works in this space: ``W_mat @ feature_row + bias`` is the layer's output.

One small registry keyed by module type (found through the MRO, or by qualified name for classes of
optional packages), so a new layer type touches one entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from secateurs.registry import Registry


@dataclass(frozen=True)
class FeatureMap:
    """How one module instance reads its input: ``rows(x)`` -> (N, channels·per_channel) float64."""

    in_dim: int  # weight dim that indexes input channels
    channels: int  # input channels of the activation
    per_channel: int  # features per input channel (k·k for convs, 1 for Linear)
    groups: int = 1  # grouped convolution: each output reads channels // groups of them
    rows: Callable[[torch.Tensor], torch.Tensor] | None = None  # None: not unfoldable (statistics unavailable)
    signature: tuple[object, ...] = ()  # equal signatures + the same input tensor = the same features

    @property
    def size(self) -> int:
        return self.channels * self.per_channel

    def features_of(self, channels: torch.Tensor) -> torch.Tensor:
        """Feature indices of the given input channel indices (each expands to ``per_channel`` features)."""
        offs = torch.arange(self.per_channel, dtype=torch.long)
        return (channels.long()[:, None] * self.per_channel + offs[None, :]).reshape(-1)

    def matrix(self, weight: torch.Tensor) -> torch.Tensor:
        """The weight as (out, in_per_group·per_channel) float64, rows = output channels."""
        w = weight.detach().to(torch.float64)
        if self.in_dim == 0:  # HF Conv1D stores (in, out)
            w = w.t()
        return w.reshape(w.shape[0], -1)

    def unmatrix(self, mat: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Inverse of ``matrix`` for a (possibly pruned) weight of shape ``like.shape``."""
        if self.in_dim == 0:
            return mat.t().reshape(like.shape).to(like.dtype)
        return mat.reshape(like.shape).to(like.dtype)


FEATURE_MAPS: Registry[Callable[[nn.Module], FeatureMap | None]] = Registry("feature map")


def register_feature_map(*types: type | str) -> Callable[[Callable[[nn.Module], FeatureMap | None]], Callable[[nn.Module], FeatureMap | None]]:
    return FEATURE_MAPS.register(*types)


def feature_map(module: nn.Module) -> FeatureMap | None:
    """The module's feature map, or None when its type is not a supported consumer layer."""
    fn = FEATURE_MAPS.for_type(type(module))
    return None if fn is None else fn(module)


def _flat_rows(x: torch.Tensor) -> torch.Tensor:
    return x.detach().reshape(-1, x.shape[-1]).to(torch.float64)


@register_feature_map(nn.Linear)
def _linear(m: nn.Module) -> FeatureMap:
    return FeatureMap(1, int(m.in_features), 1, 1, _flat_rows, ("flat",))  # type: ignore[arg-type]


@register_feature_map("transformers.pytorch_utils.Conv1D")
def _hf_conv1d(m: nn.Module) -> FeatureMap:
    return FeatureMap(0, int(cast(torch.Tensor, m.weight).shape[0]), 1, 1, _flat_rows, ("flat",))


def _padding(m: nn.Conv2d, k: tuple[int, ...]) -> tuple[int, ...] | None:
    if isinstance(m.padding, str):
        if m.padding == "valid":
            return (0,) * len(k)
        total = [d * (kk - 1) for d, kk in zip(m.dilation, k, strict=True)]
        return None if any(t % 2 for t in total) else tuple(t // 2 for t in total)
    return tuple(int(p) for p in m.padding)


@register_feature_map(nn.Conv1d, nn.Conv2d)
def _conv(module: nn.Module) -> FeatureMap:
    m = cast(nn.Conv2d, module)  # Conv1d has the same attributes
    k = tuple(int(s) for s in m.kernel_size)
    per = 1
    for s in k:
        per *= s
    pad = _padding(m, k)
    rows = None
    signature: tuple[object, ...] = ("conv", k, tuple(m.dilation), pad, tuple(m.stride))
    if pad is not None and m.padding_mode == "zeros":
        two_d = len(k) == 2
        kernel, dil, stride = (k, m.dilation, m.stride) if two_d else ((1, *k), (1, *m.dilation), (1, *m.stride))
        padding = pad if two_d else (0, *pad)

        def rows(x: torch.Tensor) -> torch.Tensor:
            x4 = x.detach() if two_d else x.detach().unsqueeze(-2)
            if x4.ndim == 3:  # unbatched input
                x4 = x4.unsqueeze(0)
            cols = F.unfold(x4.to(torch.float64), kernel, dilation=dil, padding=padding, stride=stride)
            return cols.transpose(1, 2).reshape(-1, cols.shape[1])

    return FeatureMap(1, int(m.in_channels), per, int(m.groups), rows, signature)
