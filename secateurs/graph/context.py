"""The context a coupling rule works through: spaces of its node's inputs/outputs and relations."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from secateurs.graph.capture import OpNode, Ref, refs_in
from secateurs.graph.meta import tensor_dtype
from secateurs.graph.relations import Relations


class RuleContext:
    """Gives a rule the spaces of its node and records relations, tracking what it mentioned."""

    def __init__(self, node: OpNode, rel: Relations, spaces: dict[str, list[list[int]]], users: dict[str, list[OpNode]],
                 nodes: dict[str, OpNode] | None = None):
        self.node = node
        self.rel = rel
        self._spaces = spaces
        self._users = users
        self._nodes = nodes or {}
        self.mentioned: set[int] = set()

    # ---- arguments -------------------------------------------------------------------------
    def arg(self, index: int, name: str | None = None, default: Any = None) -> Any:
        if index < len(self.node.args):
            return self.node.args[index]
        if name is not None and name in self.node.kwargs:
            return self.node.kwargs[name]
        return default

    @staticmethod
    def is_tensor_ref(value: Any) -> bool:
        return isinstance(value, Ref)

    def tensor_refs(self) -> Iterator[Ref]:
        """Every tensor reference among the node's args and kwargs (nested lists included)."""

        yield from refs_in((self.node.args, self.node.kwargs))

    def users(self, ref: Ref) -> list[OpNode]:
        return self._users.get(ref.name, [])

    def spaces(self, ref: Ref, output: int = 0) -> list[int]:
        outs = self._spaces.get(ref.name)
        if not outs or output >= len(outs):
            return []
        return outs[output]

    def out(self, output: int = 0) -> list[int]:
        outs = self._spaces.get(self.node.name) or []
        return outs[output] if output < len(outs) else []

    def n_outputs(self) -> int:
        return len(self._spaces.get(self.node.name) or [])

    def shape(self, ref: Ref, output: int = 0) -> tuple[int, ...]:
        return tuple(self.rel.sizes[s] for s in self.spaces(ref, output))

    def out_shape(self, output: int = 0) -> tuple[int, ...]:
        return tuple(self.rel.sizes[s] for s in self.out(output))

    def size(self, space: int) -> int:
        return self.rel.sizes[space]

    def dtype(self, ref: Ref | None = None) -> torch.dtype | None:
        """dtype of a tensor argument (of this node's first output when ``ref`` is None), None if unknown."""
        if ref is None:
            return tensor_dtype(self.node.value)
        node = self._nodes.get(ref.name)
        return tensor_dtype(node.value) if node is not None else None

    # ---- zeros: are removed units exactly zero here in the masked original? -----------------
    def is_zero(self, space: int) -> bool:
        return space in self.rel.zero

    def zero(self, *spaces: int) -> None:
        """Record that removed units of these (output) spaces are zero in the masked original."""
        self.rel.zero.update(spaces)

    def carry(self, src: Sequence[int] | int, out: Sequence[int] | int) -> None:
        """``out`` holds the values of ``src`` (a view, copy or slice): zero where every source is zero."""
        srcs = [src] if isinstance(src, int) else list(src)
        outs = [out] if isinstance(out, int) else list(out)
        if srcs and all(s in self.rel.zero for s in srcs):
            self.rel.zero.update(outs)

    def carry_all(self, src: Sequence[int], out: Sequence[int]) -> None:
        """``carry`` dim by dim."""
        for s, o in zip(src, out, strict=True):
            self.carry(s, o)

    # ---- relations -------------------------------------------------------------------------
    def same(self, a: int, b: int) -> None:
        if self.rel.sizes[a] != self.rel.sizes[b]:
            # Different sizes cannot index the same units (a broadcast size-1 dim, usually).
            if self.rel.sizes[a] == 1:
                self.freeze(a, "broadcast against a larger dimension")
            elif self.rel.sizes[b] == 1:
                self.freeze(b, "broadcast against a larger dimension")
            else:  # a rule related dims that are not the same: neither may be pruned on its own
                self.freeze_all((a, b), "related dimensions of different sizes")
            self.mentioned.update((a, b))
            return
        self.mentioned.update((a, b))
        if a != b:
            self.rel.same.append((a, b))

    def same_all(self, a: Sequence[int], b: Sequence[int]) -> None:
        for x, y in zip(a, b, strict=True):
            self.same(x, y)

    def link(self, a: int, a_idx: np.ndarray, b: int, b_idx: np.ndarray) -> None:
        self.mentioned.update((a, b))
        if len(a_idx):
            self.rel.links.append((a, np.asarray(a_idx, dtype=np.int64), b, np.asarray(b_idx, dtype=np.int64)))

    def product(self, flat: int, factors: Sequence[int]) -> None:
        """``flat`` is the row-major product of ``factors``; size-1 factors are dropped."""
        self.mentioned.add(flat)
        self.mentioned.update(factors)
        sizes = [self.rel.sizes[f] for f in factors]
        if int(np.prod(sizes)) != self.rel.sizes[flat]:
            raise RuntimeError(f"product sizes {sizes} do not multiply to {self.rel.sizes[flat]} at {self.node.where()}")
        real = [f for f in factors if self.rel.sizes[f] != 1]
        for f in factors:
            if self.rel.sizes[f] == 1:
                self.freeze(f, "size-1 factor of a reshape")
        if len(real) == 1:
            self.same(flat, real[0])
        elif real:
            self.rel.products.append((flat, tuple(real)))
        else:
            self.freeze(flat, "size-1 dimension")

    def freeze(self, space: int, reason: str) -> None:
        self.mentioned.add(space)
        self.rel.frozen.setdefault(space, []).append(f"{reason} at {self.node.where()}")

    def freeze_all(self, spaces: Sequence[int], reason: str) -> None:
        for s in spaces:
            self.freeze(s, reason)

    def inexact(self, space: int, reason: str) -> None:
        self.mentioned.add(space)
        self.rel.inexact.setdefault(space, []).append(f"{reason} at {self.node.where()}")

    def tag(self, space: int, label: str) -> None:
        self.mentioned.add(space)
        self.rel.tags.setdefault(space, set()).add(label)

    def hint(self, name: str, *spaces: int) -> None:
        """Record that the module running this node has an argument ``name`` equal to these sizes."""
        self.rel.hints.append((self.node.module_path, name, tuple(spaces)))
        self.rel.node_hints.append((self.node.name, name, tuple(spaces)))

    def mention(self, *spaces: int) -> None:
        self.mentioned.update(spaces)

    def const(self, ref: Any) -> Any:
        """The python value of a constant argument (scalars, lists); None for tensors."""
        return None if isinstance(ref, Ref) else ref
