"""One sliced-module case per surgery handler type, keyed by the registered module type.

A case says how to build the module and its input, which indices of its input and output channels
survive, the plan ``keep``/``hints`` that express that, and the attributes the handler must refresh.
``tests/surgery/test_handler_registry.py`` is generated from ``HANDLERS.entries()`` and fails
for a handler type without a case here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class HandlerCase:
    make: Callable[[], nn.Module]
    inputs: Callable[[], torch.Tensor]
    keep: dict[str, dict[int, list[int]]]  # parameter/buffer -> dim -> kept indices
    attrs: dict[str, Any]  # attribute -> value after surgery
    in_keep: list[int] | None = None  # kept input channels (dim ``channel_dim`` of the input)
    out_keep: list[int] | None = None  # kept output channels (dim ``channel_dim`` of the output)
    hints: dict[str, Any] = field(default_factory=dict)
    channel_dim: int = 1
    # When removing channels changes the kept ones (normalising over the width), the pruned module is
    # compared with this module built at the new width and given the sliced state instead.
    rebuild: Callable[[], nn.Module] | None = None


def _img(nd: int, c: int, size: int = 5) -> Callable[[], torch.Tensor]:
    return lambda: torch.randn(2, c, *([size] * nd))


_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_TCONV = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}

# Conv 8 -> 8 in 4 groups of 2: remove group 1 entirely (channels 2, 3): 3 groups stay.
_GROUP_KEEP = [0, 1, 4, 5, 6, 7]


def _conv_case(nd: int) -> HandlerCase:
    return HandlerCase(
        make=lambda: _CONV[nd](8, 8, 3, padding=1, groups=4),
        inputs=_img(nd, 8, 4 if nd == 3 else 5),
        keep={"weight": {0: _GROUP_KEEP}, "bias": {0: _GROUP_KEEP}},
        hints={"groups": 3},
        in_keep=_GROUP_KEEP,
        out_keep=_GROUP_KEEP,
        attrs={"in_channels": 6, "out_channels": 6, "groups": 3},
    )


def _tconv_case(nd: int) -> HandlerCase:
    # ConvTranspose 6 -> 4 (weight [Cin, Cout, k...]): keep inputs 0, 2, 3, 5 and outputs 1, 3.
    return HandlerCase(
        make=lambda: _TCONV[nd](6, 4, 3, padding=1),
        inputs=_img(nd, 6, 4 if nd == 3 else 5),
        keep={"weight": {0: [0, 2, 3, 5], 1: [1, 3]}, "bias": {0: [1, 3]}},
        in_keep=[0, 2, 3, 5],
        out_keep=[1, 3],
        attrs={"in_channels": 4, "out_channels": 2, "groups": 1},
    )


def _bn(cls: Callable[[int], Any], nd: int) -> HandlerCase:
    def make() -> nn.Module:
        m = cls(6)
        with torch.no_grad():
            m.register_buffer("running_mean", torch.randn(6))
            m.register_buffer("running_var", torch.rand(6) + 0.5)
            m.weight.uniform_(0.5, 2)
            m.bias.uniform_(-1, 1)
        return m

    keep = [0, 2, 5]
    return HandlerCase(
        make=make,
        inputs=_img(nd, 6, 3),
        keep={"weight": {0: keep}, "bias": {0: keep}, "running_mean": {0: keep}, "running_var": {0: keep}},
        in_keep=keep,
        out_keep=keep,
        attrs={"num_features": 3},
    )


def _norm_last(cls: type[nn.Module]) -> HandlerCase:
    keep = [1, 2, 4]
    return HandlerCase(
        make=lambda: cls(6),
        inputs=lambda: torch.randn(2, 3, 6),
        keep={"weight": {0: keep}, **({"bias": {0: keep}} if cls is nn.LayerNorm else {})},
        hints={"normalized_shape": 3},
        attrs={"normalized_shape": (3,)},
        in_keep=keep,
        out_keep=keep,
        channel_dim=-1,
        rebuild=lambda: cls(3),
    )


def _linear() -> HandlerCase:
    return HandlerCase(
        make=lambda: nn.Linear(6, 5),
        inputs=lambda: torch.randn(3, 6),
        keep={"weight": {0: [0, 3, 4], 1: [1, 2, 5]}, "bias": {0: [0, 3, 4]}},
        in_keep=[1, 2, 5],
        out_keep=[0, 3, 4],
        attrs={"in_features": 3, "out_features": 3},
    )


def _embedding() -> HandlerCase:
    return HandlerCase(
        make=lambda: nn.Embedding(7, 6),
        inputs=lambda: torch.tensor([[0, 3, 6], [1, 1, 2]]),
        keep={"weight": {1: [0, 1, 4]}},
        out_keep=[0, 1, 4],
        channel_dim=-1,
        attrs={"num_embeddings": 7, "embedding_dim": 3},
    )


def _group_norm() -> HandlerCase:
    # GroupNorm(3 groups of 2 channels): remove group 1 (channels 2, 3) entirely: exact.
    keep = [0, 1, 4, 5]
    return HandlerCase(
        make=lambda: nn.GroupNorm(3, 6),
        inputs=_img(2, 6, 3),
        keep={"weight": {0: keep}, "bias": {0: keep}},
        hints={"num_groups": 2},
        in_keep=keep,
        out_keep=keep,
        attrs={"num_groups": 2, "num_channels": 4},
    )


def _prelu() -> HandlerCase:
    keep = [0, 3, 4]
    return HandlerCase(
        make=lambda: nn.PReLU(6, init=0.1),
        inputs=_img(2, 6, 3),
        keep={"weight": {0: keep}},
        in_keep=keep,
        out_keep=keep,
        attrs={"num_parameters": 3},
    )


HANDLER_CASES: dict[type, HandlerCase] = {
    nn.Conv1d: _conv_case(1),
    nn.Conv2d: _conv_case(2),
    nn.Conv3d: _conv_case(3),
    nn.ConvTranspose1d: _tconv_case(1),
    nn.ConvTranspose2d: _tconv_case(2),
    nn.ConvTranspose3d: _tconv_case(3),
    nn.Linear: _linear(),
    nn.Embedding: _embedding(),
    nn.modules.batchnorm._NormBase: _bn(nn.BatchNorm2d, 2),
    nn.BatchNorm1d: _bn(nn.BatchNorm1d, 1),
    nn.BatchNorm3d: _bn(nn.BatchNorm3d, 3),
    nn.InstanceNorm2d: _bn(lambda c: nn.InstanceNorm2d(c, affine=True, track_running_stats=True), 2),
    nn.LayerNorm: _norm_last(nn.LayerNorm),
    nn.RMSNorm: _norm_last(nn.RMSNorm),
    nn.GroupNorm: _group_norm(),
    nn.PReLU: _prelu(),
}

# Handlers whose module cannot be driven by one input tensor (nn.MultiheadAttention takes q, k, v and
# swaps its class) are tested in their own file; the registry test checks that file names the type.
TESTED_ELSEWHERE: dict[type, str] = {
    nn.MultiheadAttention: "tests/surgery/test_pruned_mha.py",
}
