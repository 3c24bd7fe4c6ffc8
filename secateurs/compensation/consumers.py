"""Consumer layers of a plan: Linear/Conv/Conv1D weights whose INPUT dim the plan shrinks.

Found from ``plan.keep`` alone (so a plan replayed from JSON works): a kept-index list on the weight
dim that indexes input channels (``calibration.features``) makes the module a consumer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from secateurs.calibration.features import FeatureMap, feature_map
from secateurs.plans import Plan


@dataclass
class Consumer:
    path: str  # module path
    fmap: FeatureMap
    kept_in: list[int]  # kept indices along the weight's input dim (per-group indices for grouped convs)
    kept_out: list[int] | None  # kept output channels, None when the outputs are not pruned
    weight: torch.Tensor  # original weight as (out, in_per_group·k) float64 (see FeatureMap.matrix)
    bias: torch.Tensor | None  # original bias, float64
    tied: bool  # the weight is shared with another parameter name: only the bias may change

    @property
    def out_dim(self) -> int:
        return 1 if self.fmap.in_dim == 0 else 0

    def columns(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(kept, removed) column indices of ``weight``."""
        n = self.weight.shape[1] // self.fmap.per_channel
        kept = torch.as_tensor(self.kept_in, dtype=torch.long)
        removed_ch = torch.as_tensor(sorted(set(range(n)) - set(self.kept_in)), dtype=torch.long)
        return self.fmap.features_of(kept), self.fmap.features_of(removed_ch)


def _tied_ids(model: nn.Module) -> set[int]:
    seen: dict[int, int] = {}
    for _, m in model.named_modules(remove_duplicate=False):
        for t in m._parameters.values():
            if t is not None:
                seen[id(t)] = seen.get(id(t), 0) + 1
    return {k for k, n in seen.items() if n > 1}


def find_consumers(model: nn.Module, plan: Plan) -> tuple[list[Consumer], list[str]]:
    """Consumers of ``plan`` in the unpruned ``model`` (weights copied), and notes on layers left out."""
    consumers: list[Consumer] = []
    notes: list[str] = []
    tied = _tied_ids(model)
    for fqn, dims in sorted(plan.keep.items()):
        path, _, attr = fqn.rpartition(".")
        if attr != "weight":
            continue
        try:
            module = model.get_submodule(path)
        except AttributeError:
            continue
        fmap = feature_map(module)
        if fmap is None or fmap.in_dim not in dims:
            continue
        weight = module._parameters.get("weight")
        if weight is None or weight.is_meta:
            notes.append(f"{path}: no weights to refit (meta device)")
            continue
        out_dim = 1 if fmap.in_dim == 0 else 0
        bias = module._parameters.get("bias")
        consumers.append(Consumer(
            path, fmap, list(dims[fmap.in_dim]), list(dims[out_dim]) if out_dim in dims else None,
            fmap.matrix(weight), None if bias is None else bias.detach().to(torch.float64).clone(),
            id(weight) in tied,
        ))
    return consumers, notes
