"""FLAP bias compensation (An et al., 2024): b' = b + W[:, removed] · E[x_removed].

The kept weights are unchanged; the removed columns' mean contribution moves into the bias, so the
output is exact when the removed input features are constant over the data. For convolutions the
mean is taken over unfolded patches (zero padding included), grouped convolutions per group.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from secateurs.calibration.moments import Moments
from secateurs.compensation.consumers import Consumer
from secateurs.compensation.methods import Fit, register_method


def mean_shift(c: Consumer, m: Moments) -> torch.Tensor:
    """W[:, removed] · E[x_removed] for every original output row."""
    _, removed = c.columns()
    mu = m.mean.cpu()
    groups = c.fmap.groups
    if groups == 1:
        return c.weight[:, removed] @ mu[removed]
    out = c.weight.shape[0]
    per_cols = c.weight.shape[1]  # in_per_group·k columns
    mu_g = mu.reshape(groups, per_cols)  # features of each group's input channels
    w_g = c.weight.reshape(groups, out // groups, per_cols)
    return torch.einsum("gok,gk->go", w_g[:, :, removed], mu_g[:, removed]).reshape(out)


@dataclass
class BiasCompensation:
    name: str = "bias"
    needs_gram: bool = False

    def fit(self, c: Consumer, m: Moments, *, ridge: float, with_bias: bool) -> Fit:
        if not with_bias:
            return Fit(None, None, f"{c.path}: has no bias and add_bias=False; not compensated")
        base = c.bias if c.bias is not None else torch.zeros(c.weight.shape[0], dtype=torch.float64)
        return Fit(None, base + mean_shift(c, m))


@register_method("bias")
def bias() -> BiasCompensation:
    return BiasCompensation()
