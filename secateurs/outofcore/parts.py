"""The schedule of an out-of-core run: the model's tensors cut into parts that are loaded one at a time.

A part is the tensors before the blocks (embeddings), one block (a decoder layer), or the tensors after the
blocks (final norm, LM head). ``Resident`` loads a part's tensors from the checkpoint into the weightless
model for the time of a ``with`` block, which is all the sequential calibration needs to run out of core;
``LazyTensors`` hands criteria one tensor at a time, read on demand and kept in a small byte-bounded cache.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from secateurs.calibration.residency import Residency
from secateurs.calibration.sequential import find_blocks
from secateurs.outofcore.checkpoint import Checkpoint
from secateurs.outofcore.memory import trim
from secateurs.outofcore.skeleton import load_, release_, stored_names


@dataclass(frozen=True)
class Part:
    name: str  # "before blocks", "model.layers.3", "after blocks"
    tensors: tuple[str, ...]  # checkpoint names (a tied tensor once)
    block: int | None = None


@dataclass(frozen=True)
class Schedule:
    container: str  # path of the block list
    prefix: Part
    blocks: tuple[Part, ...]
    suffix: Part

    @property
    def parts(self) -> list[Part]:
        return [self.prefix, *self.blocks, self.suffix]


def schedule(model: nn.Module) -> Schedule:
    """Parts in the model's state-dict order: names before the first block, each block, the rest."""
    path, blocks = find_blocks(model)
    names = stored_names(model)
    per_block: list[list[str]] = [[] for _ in blocks]
    before: list[str] = []
    after: list[str] = []
    prefix = f"{path}."
    for name in names:
        head, _, _ = name[len(prefix):].partition(".") if name.startswith(prefix) else ("", "", "")
        if head.isdigit() and int(head) < len(blocks):
            per_block[int(head)].append(name)
        elif any(per_block):
            after.append(name)
        else:
            before.append(name)
    parts = tuple(Part(f"{path}.{i}", tuple(t), i) for i, t in enumerate(per_block))
    return Schedule(path, Part("before blocks", tuple(before)), parts, Part("after blocks", tuple(after)))


class Resident(Residency):
    """Loads the part a step of the sequential calibration runs, frees it after."""

    def __init__(self, model: nn.Module, ckpt: Checkpoint, plan: Schedule) -> None:
        self.model, self.ckpt, self.plan = model, ckpt, plan

    @contextlib.contextmanager
    def loaded(self, names: tuple[str, ...]) -> Iterator[None]:
        load_(self.model, self.ckpt.read(names))
        try:
            yield
        finally:
            release_(self.model, list(names))
            trim()

    def head(self) -> contextlib.AbstractContextManager[None]:
        return self.loaded(self.plan.prefix.tensors)

    def block(self, b: int) -> contextlib.AbstractContextManager[None]:
        return self.loaded(self.plan.blocks[b].tensors)

    def tail(self) -> contextlib.AbstractContextManager[None]:
        return self.loaded(self.plan.prefix.tensors + self.plan.suffix.tensors)


class LazyTensors(Mapping[str, torch.Tensor]):
    """The model's state-dict names mapped to tensors read from the checkpoint when asked (tied names read the
    one stored tensor); the most recent ones stay cached up to ``budget`` bytes."""

    def __init__(self, model: nn.Module, ckpt: Checkpoint, budget: int) -> None:
        self.ckpt, self.budget = ckpt, budget
        stored = {id(t): n for n, t in model.state_dict(keep_vars=True).items() if n in ckpt.tensors}
        self._source = {n: stored[id(t)] for n, t in model.state_dict(keep_vars=True).items() if id(t) in stored}
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.reads = 0  # tensors read from disk (for reports and tests)

    def __getitem__(self, key: str) -> torch.Tensor:
        source = self._source[key]
        t = self._cache.get(source)
        if t is not None:
            self._cache.move_to_end(source)
            return t
        trim()  # what the criterion freed since the last read
        t = self.ckpt.read([source])[source]
        self.reads += 1
        size = t.numel() * t.element_size()
        while self._cache and sum(v.numel() * v.element_size() for v in self._cache.values()) + size > self.budget:
            self._cache.popitem(last=False)
        if size <= self.budget:
            self._cache[source] = t
        return t

    def __iter__(self) -> Iterator[str]:
        return iter(self._source)

    def __len__(self) -> int:
        return len(self._source)

    def clear(self) -> None:
        self._cache.clear()
