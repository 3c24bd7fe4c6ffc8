"""Router statistics of mixture-of-experts layers on calibration data (for the ``routing`` criterion).

A router is named by its weight's FQN (``graph/experts.py`` finds them) and recognised at run time as the weight
operand of ``F.linear`` (a torch function mode, since routers are custom modules that call ``F.linear`` on their
parameter). Per expert, over every token: ``mass`` = the softmax probability the token gives the expert when the
expert is among its top-k (the gate mass routed to it), ``picks`` = how often it is among the top-k, ``prob`` =
its mean softmax probability. Sums are float64 and all-reduced with the other statistics.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

_LINEAR = (F.linear, torch._C._nn.linear, torch.ops.aten.linear.default)  # eager, and a captured program


@dataclass
class RouterStats:
    mass: torch.Tensor
    picks: torch.Tensor
    prob: torch.Tensor
    tokens: torch.Tensor  # scalar

    @staticmethod
    def empty(experts: int) -> RouterStats:
        z = torch.zeros(experts, dtype=torch.float64)
        return RouterStats(z.clone(), z.clone(), z.clone(), torch.zeros((), dtype=torch.float64))

    def update(self, logits: torch.Tensor, top_k: int) -> None:
        probs = torch.softmax(logits.detach().reshape(-1, logits.shape[-1]).to(torch.float64), dim=-1).cpu()
        top = torch.topk(probs, min(top_k, probs.shape[-1]), dim=-1).indices
        chosen = torch.zeros_like(probs).scatter_(-1, top, 1.0)
        self.mass += (probs * chosen).sum(0)
        self.picks += chosen.sum(0)
        self.prob += probs.sum(0)
        self.tokens += probs.shape[0]

    def tensors(self) -> list[torch.Tensor]:
        return [self.mass, self.picks, self.prob, self.tokens]


class _Tap(TorchFunctionMode):
    def __init__(self, table: dict[str, RouterStats], routers: dict[int, tuple[str, int]]):
        super().__init__()
        self.table, self.routers = table, routers

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if func in _LINEAR and len(args) > 1 and isinstance(args[1], torch.Tensor) and isinstance(out, torch.Tensor):
            found = self.routers.get(args[1].data_ptr())
            if found is not None:
                fqn, k = found
                self.table.setdefault(fqn, RouterStats.empty(out.shape[-1])).update(out, k)
        return out


@contextlib.contextmanager
def routing_hooks(model: nn.Module, table: dict[str, RouterStats], routers: Mapping[str, int]) -> Iterator[None]:
    """Within the block, every ``F.linear`` by one of ``routers`` (weight FQN -> top-k) updates ``table``."""
    if not routers:
        yield
        return
    params = dict(model.named_parameters())
    by_ptr = {params[fqn].data_ptr(): (fqn, int(k)) for fqn, k in routers.items() if fqn in params}
    with _Tap(table, by_ptr):
        yield
