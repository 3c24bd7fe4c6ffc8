"""Index spaces (one per tensor dimension) and the relations op rules record between them.

A *space* is one dimension of one tensor value in the captured graph. Rules record:

* ``same(a, b)``: the two dimensions index the same units in the same order;
* ``link(a, ai, b, bi)``: element ``ai[k]`` of ``a`` is element ``bi[k]`` of ``b`` (cat, split, slice);
* ``product(flat, factors)``: ``flat`` is the row-major product of ``factors`` (reshape into heads,
  flatten of C x H x W, grouped conv, GQA repeat);
* ``freeze(space, reason)``: no unit of this dimension may be removed;
* ``inexact(space, reason)``: removing units is structurally valid but the pruned model is not the
  masked original (normalisation or averaging over the dimension);
* ``tag(space, label)``: a label for the kind of unit (``heads``, ``head_dim``);
* ``hint(name, spaces)``: an op argument whose value is the size of ``spaces`` (conv ``groups``,
  ``num_heads``), so surgery handlers can refresh the attribute the module's forward reads.

Beside the relations, ``zero`` holds the spaces whose removed units are exactly zero in the masked original
(weights are zeroed there; a linear output keeps the zeros, a sigmoid or ``+ 1`` does not). Rules read it to
decide whether a reduction or contraction over a dimension leaves removed units out (exact) or not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Relations:
    sizes: list[int] = field(default_factory=list)
    owners: list[tuple[str, int, int]] = field(default_factory=list)  # (node name, output index, dim)
    same: list[tuple[int, int]] = field(default_factory=list)
    links: list[tuple[int, np.ndarray, int, np.ndarray]] = field(default_factory=list)
    products: list[tuple[int, tuple[int, ...]]] = field(default_factory=list)
    frozen: dict[int, list[str]] = field(default_factory=dict)
    inexact: dict[int, list[str]] = field(default_factory=dict)
    tags: dict[int, set[str]] = field(default_factory=dict)
    hints: list[tuple[str, str, tuple[int, ...]]] = field(default_factory=list)  # (module path, name, spaces)
    node_hints: list[tuple[str, str, tuple[int, ...]]] = field(default_factory=list)  # (node name, name, spaces)
    shared: dict[object, int] = field(default_factory=dict)  # rule-private memo (slice partitions)
    zero: set[int] = field(default_factory=set)  # removed units are zero here in the masked original

    def new_space(self, size: int, owner: tuple[str, int, int]) -> int:
        self.sizes.append(int(size))
        self.owners.append(owner)
        return len(self.sizes) - 1
