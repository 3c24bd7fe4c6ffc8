"""One test case per entry of the type-keyed registries whose contracts need an instance to check.

``tests/test_registries.py`` is generated from the registries: an entry of ``LAYOUTS``, ``FEATURE_MAPS`` or
``ADAPTERS`` (depth) without a case here fails it, so a plugin author who registers a new module type adds its
case next to it. A case builds a small instance of the registered type and an input it reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class ModuleCase:
    make: Callable[[], nn.Module]
    inputs: Callable[[], torch.Tensor]


def _x(*shape: int, ids: bool = False) -> Callable[[], torch.Tensor]:
    def make() -> torch.Tensor:
        g = torch.Generator().manual_seed(0)
        return torch.randint(0, 10, shape, generator=g) if ids else torch.randn(*shape, generator=g)

    return make


def _hf_conv1d() -> nn.Module:
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    return Conv1D(4, 6)


#: registered key (class, or "module.QualName" of an optional package) -> a small instance and an input
MODULE_CASES: dict[Any, ModuleCase] = {
    nn.Linear: ModuleCase(lambda: nn.Linear(6, 4), _x(2, 3, 6)),
    nn.Conv1d: ModuleCase(lambda: nn.Conv1d(6, 4, 3, padding=1), _x(2, 6, 9)),
    nn.Conv2d: ModuleCase(lambda: nn.Conv2d(6, 4, 3, padding=1), _x(2, 6, 5, 5)),
    nn.Conv3d: ModuleCase(lambda: nn.Conv3d(6, 4, 1), _x(1, 6, 2, 3, 3)),
    nn.ConvTranspose1d: ModuleCase(lambda: nn.ConvTranspose1d(6, 4, 3), _x(2, 6, 5)),
    nn.ConvTranspose2d: ModuleCase(lambda: nn.ConvTranspose2d(6, 4, 3), _x(2, 6, 4, 4)),
    nn.ConvTranspose3d: ModuleCase(lambda: nn.ConvTranspose3d(6, 4, 1), _x(1, 6, 2, 2, 2)),
    nn.modules.batchnorm._BatchNorm: ModuleCase(lambda: nn.BatchNorm2d(6).eval(), _x(2, 6, 3, 3)),
    nn.GroupNorm: ModuleCase(lambda: nn.GroupNorm(2, 6), _x(2, 6, 3, 3)),
    nn.modules.instancenorm._InstanceNorm: ModuleCase(lambda: nn.InstanceNorm2d(6, affine=True), _x(2, 6, 3, 3)),
    nn.LayerNorm: ModuleCase(lambda: nn.LayerNorm(6), _x(2, 3, 6)),
    nn.Embedding: ModuleCase(lambda: nn.Embedding(10, 6), _x(2, 3, ids=True)),
    "transformers.pytorch_utils.Conv1D": ModuleCase(_hf_conv1d, _x(2, 3, 6)),
}


def _tiny_llama() -> tuple[nn.Module, str]:
    from secateurs.testing.hf import tiny

    return tiny("llama").model, "model.layers"


#: depth adapter key -> (a model the adapter serves, the block container path it must find)
DEPTH_CASES: dict[Any, Callable[[], tuple[nn.Module, str]]] = {
    "transformers.modeling_utils.PreTrainedModel": _tiny_llama,
}
