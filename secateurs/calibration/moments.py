"""Streaming first and second moments of a consumer layer's input features (sum, Gram matrix, count).

Accumulated in float64 as plain sums so ranks of a process group can all-reduce them. The Gram matrix
of a layer with F input features takes F²·8 bytes (F = in_features, or C_in·k·k for a convolution).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Moments:
    """Sums over every feature row seen: ``sum`` (F,), ``gram`` (F, F) or None, ``count`` (scalar)."""

    sum: torch.Tensor
    gram: torch.Tensor | None
    count: torch.Tensor

    @staticmethod
    def empty(size: int, gram: bool, device: torch.device | str = "cpu") -> Moments:
        z = torch.zeros(size, dtype=torch.float64, device=device)
        g = torch.zeros(size, size, dtype=torch.float64, device=device) if gram else None
        return Moments(z, g, torch.zeros((), dtype=torch.float64, device=device))

    def update(self, rows: torch.Tensor) -> None:
        rows = rows.to(device=self.sum.device, dtype=torch.float64)
        self.sum += rows.sum(0)
        if self.gram is not None:
            self.gram += rows.T @ rows
        self.count += rows.shape[0]

    def tensors(self) -> list[torch.Tensor]:
        return [self.sum, self.count] + ([self.gram] if self.gram is not None else [])

    @property
    def mean(self) -> torch.Tensor:
        return self.sum / self.count.clamp_min(1)

    def second_moment(self) -> torch.Tensor:
        """E[x xᵀ] (uncentred)."""
        if self.gram is None:
            raise ValueError("these moments were collected without a Gram matrix")
        return self.gram / self.count.clamp_min(1)

    def covariance(self) -> torch.Tensor:
        """E[(x - μ)(x - μ)ᵀ]."""
        mu = self.mean
        return self.second_moment() - torch.outer(mu, mu)
