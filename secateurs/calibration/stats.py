"""Streaming per-channel statistics of activations: sums, sums of squares, |x| sums and zero counts."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from secateurs.calibration.moments import Moments
from secateurs.calibration.routing import RouterStats


@dataclass
class ChannelStats:
    """Running sums over every element of one channel, accumulated in float64."""

    sum: torch.Tensor
    sum_sq: torch.Tensor
    sum_abs: torch.Tensor
    zeros: torch.Tensor
    count: torch.Tensor  # elements seen per channel (scalar tensor, the same for every channel)

    @staticmethod
    def empty(channels: int, device: torch.device | str = "cpu") -> ChannelStats:
        z = torch.zeros(channels, dtype=torch.float64, device=device)
        return ChannelStats(z.clone(), z.clone(), z.clone(), z.clone(), torch.zeros((), dtype=torch.float64, device=device))

    def update(self, x: torch.Tensor, channel_dim: int) -> None:
        flat = x.detach().movedim(channel_dim, -1).reshape(-1, x.shape[channel_dim]).to(torch.float64)
        self.sum += flat.sum(0)
        self.sum_sq += flat.square().sum(0)
        self.sum_abs += flat.abs().sum(0)
        self.zeros += (flat == 0).sum(0)
        self.count += flat.shape[0]

    def tensors(self) -> list[torch.Tensor]:
        return [self.sum, self.sum_sq, self.sum_abs, self.zeros, self.count]

    def folded(self, size: int) -> ChannelStats:
        """Sum channels that share one weight index (grouped convs: ``groups`` blocks of ``size`` channels)."""
        n = len(self.sum)
        if n == size:
            return self
        s, sq, ab, z = (t.reshape(n // size, size).sum(0) for t in self.tensors()[:4])
        return ChannelStats(s, sq, ab, z, self.count * (n // size))

    @property
    def mean(self) -> torch.Tensor:
        return self.sum / self.count.clamp_min(1)

    @property
    def mean_abs(self) -> torch.Tensor:
        return self.sum_abs / self.count.clamp_min(1)

    @property
    def var(self) -> torch.Tensor:
        return (self.sum_sq / self.count.clamp_min(1) - self.mean.square()).clamp_min(0)

    @property
    def norm(self) -> torch.Tensor:
        """L2 norm of the channel over every element seen (Wanda's ||X_j||)."""
        return self.sum_sq.sqrt()

    @property
    def zero_fraction(self) -> torch.Tensor:
        """Average percentage of zeros (APoZ), as a fraction."""
        return self.zeros / self.count.clamp_min(1)


@dataclass
class Statistics:
    """Everything a data-driven criterion may read, keyed by module path or parameter FQN."""

    inputs: dict[str, ChannelStats] = field(default_factory=dict)  # module path -> stats of its first input
    outputs: dict[str, ChannelStats] = field(default_factory=dict)  # module path -> stats of its output
    grads: dict[str, torch.Tensor] = field(default_factory=dict)  # parameter FQN -> sum of batch gradients
    grad_sq: dict[str, torch.Tensor] = field(default_factory=dict)  # parameter FQN -> sum of squared batch gradients
    n_batches: int = 0
    moments: dict[str, Moments] = field(default_factory=dict)  # module path -> input feature sums / Gram (on request)
    routing: dict[str, RouterStats] = field(default_factory=dict)  # router weight FQN -> per-expert gates (on request)

    @property
    def has_grads(self) -> bool:
        return bool(self.grads) or bool(self.grad_sq)

    def has(self, grad_stat: str) -> bool:
        """Whether gradient accumulator ``"sum"`` or ``"sq"`` was collected."""
        return bool(self.grads if grad_stat == "sum" else self.grad_sq)

    def mean_grad(self, fqn: str) -> torch.Tensor | None:
        g = self.grads.get(fqn)
        return None if g is None else g / max(1, self.n_batches)

    def fisher(self, fqn: str) -> torch.Tensor | None:
        """Diagonal empirical Fisher: mean over batches of the squared batch gradient."""
        g = self.grad_sq.get(fqn)
        return None if g is None else g / max(1, self.n_batches)

    def all_tensors(self) -> list[torch.Tensor]:
        """Every accumulator in a fixed order (so ranks of a process group reduce matching tensors)."""
        out: list[torch.Tensor] = []
        for table in (self.inputs, self.outputs):
            for key in sorted(table):
                out.extend(table[key].tensors())
        for gtable in (self.grads, self.grad_sq):
            out.extend(gtable[k] for k in sorted(gtable))
        for key in sorted(self.routing):
            out.extend(self.routing[key].tensors())
        shared: set[int] = set()  # layers reading the same input share one Moments object: reduce it once
        for key in sorted(self.moments):
            if id(self.moments[key]) not in shared:
                shared.add(id(self.moments[key]))
                out.extend(self.moments[key].tensors())
        return out
