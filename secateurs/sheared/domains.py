"""Batches for ``sc.shear``: one stream of batches, or several data domains drawn by weight, with Sheared-LLaMA's
dynamic batch loading.

Every step draws a domain from the current weights (a seeded generator, the same on every rank) and takes its next
batch (a domain's batches are cycled; a one-shot generator cannot be). With reference losses, every
``update_every`` steps each drawn domain's excess ``delta = max(mean training loss since the last update -
reference, 0)`` (averaged over ranks) updates the weights as ``w <- w * exp(delta)``, normalised and mixed with
1e-4 of the uniform weights (Xia et al., 2023, Algorithm 1; the paper measures losses on a held-out set per domain,
here they are the training losses of the steps in between).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch

from secateurs.errors import InvalidArgumentError
from secateurs.recovery import distributed as D

SMOOTHING = 1e-4


class Batches:
    def __init__(self, data: Iterable[Any] | Mapping[str, Iterable[Any]], weights: Mapping[str, float] | None,
                 reference: Mapping[str, float] | None, update_every: int, seed: int):
        self.domains: dict[str, Iterable[Any]] = dict(data) if isinstance(data, Mapping) else {"data": data}
        if not self.domains:
            raise InvalidArgumentError("shear needs data: an iterable of batches or a dict of domain -> batches")
        names = list(self.domains)
        for given, what in ((weights, "domain_weights"), (reference, "reference_loss")):
            if given is not None and set(given) != set(names):
                raise InvalidArgumentError(f"{what} names {sorted(given)}, the data domains are {sorted(names)}")
        w = torch.tensor([float(weights[n]) if weights else 1.0 for n in names], dtype=torch.float64)
        if not (w >= 0).all() or float(w.sum()) <= 0:
            raise InvalidArgumentError(f"domain_weights must be non-negative and not all zero, got {weights}")
        self.names = names
        self.weights = w / w.sum()
        self.reference = dict(reference) if reference else None
        self.update_every = update_every
        self.generator = torch.Generator().manual_seed(seed)
        self.consumed = dict.fromkeys(names, 0)
        self.losses: dict[str, list[float]] = {n: [] for n in names}
        self._iters: dict[str, Iterator[Any]] = {}

    def _next_of(self, name: str) -> Any:
        it = self._iters.get(name)
        if it is None:
            it = self._iters[name] = iter(self.domains[name])
        try:
            return next(it)
        except StopIteration:
            if isinstance(self.domains[name], Iterator):
                raise InvalidArgumentError(f"the batches of {name!r} ran out and a one-shot iterator cannot be read "
                                           "again: pass a list or a DataLoader") from None
            it = self._iters[name] = iter(self.domains[name])
            try:
                return next(it)
            except StopIteration:
                raise InvalidArgumentError(f"domain {name!r} yields no batches") from None

    def next(self) -> tuple[str, Any]:
        i = int(torch.multinomial(self.weights, 1, generator=self.generator)) if len(self.names) > 1 else 0
        name = self.names[i]
        self.consumed[name] += 1
        return name, self._next_of(name)

    def record(self, name: str, loss: float, step: int) -> dict[str, float] | None:
        """Note a batch's loss; after every ``update_every`` steps with reference losses, the new weights."""
        self.losses[name].append(loss)
        if self.reference is None or (step + 1) % self.update_every:
            return None
        means = [sum(v) / len(v) if v else math.nan for v in (self.losses[n] for n in self.names)]
        means = D.mean_across_ranks(means)
        delta = torch.tensor([max(m - self.reference[n], 0.0) if math.isfinite(m) else 0.0
                              for n, m in zip(self.names, means, strict=True)], dtype=torch.float64)
        w = self.weights * torch.exp(delta)
        w = w / w.sum()
        self.weights = (1 - SMOOTHING) * w + SMOOTHING / len(self.names)
        self.losses = {n: [] for n in self.names}
        return dict(zip(self.names, self.weights.tolist(), strict=True))

    # -- checkpoints ----------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"weights": self.weights.tolist(), "consumed": dict(self.consumed),
                "generator": self.generator.get_state().tolist(), "losses": self.losses}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.weights = torch.tensor(state["weights"], dtype=torch.float64)
        self.generator.set_state(torch.tensor(state["generator"], dtype=torch.uint8))
        self.losses = {n: list(v) for n, v in state["losses"].items()}
        for name, n in state["consumed"].items():  # the same batches come next as in the interrupted run
            for _ in range(int(n)):
                self._next_of(name)
            self.consumed[name] = int(n)
