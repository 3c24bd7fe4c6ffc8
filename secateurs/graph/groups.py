"""Prunable units and groups.

A *unit* is the smallest set of elements that can be removed together and leave every tensor
rectangular: one atom (a channel joined across layers), closed under the product relations (a
head removes ``head_dim`` channels of q/k/v/o; a whole GQA group removes its query heads too).
Units that touch the same classes with the same counts form a *group* (all channels of one
coupled set of layers, all heads of one attention block).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from secateurs.graph.structure import Structure


@dataclass
class Member:
    fqn: str
    dim: int
    cls: int


@dataclass
class Group:
    id: int
    kind: str  # "channels" | "heads" | "query_heads" | "head_dim" | "experts"
    members: list[Member]
    unit_index: dict[int, np.ndarray]  # class -> (n_units, per_unit) local indices removed by each unit
    exact: bool
    inexact_reasons: list[str] = field(default_factory=list)
    tags: set[str] = field(default_factory=set)  # labels of every class the units touch
    min_units: int = 1  # never keep fewer units (a router's top-k experts)
    meta: dict[str, Any] = field(default_factory=dict)  # kind-specific facts (experts: router FQN, top_k)

    @property
    def n_units(self) -> int:
        return len(next(iter(self.unit_index.values())))

    @property
    def unit_size(self) -> int:
        """Channels of the first parameter member that one unit removes (1 for channels, head_dim for heads)."""
        first = self.members[0]
        return int(self.unit_index[first.cls].shape[1])

    @property
    def name(self) -> str:
        return f"{self.members[0].fqn}[dim {self.members[0].dim}]"

    def modules(self) -> list[str]:
        return sorted({m.fqn.rsplit(".", 1)[0] if "." in m.fqn else "" for m in self.members})

    def member_indices(self, member: Member, units: np.ndarray) -> np.ndarray:
        """Sorted indices along ``member.dim`` that removing ``units`` removes."""
        if len(units) == 0:
            return np.zeros(0, dtype=np.int64)
        return np.unique(self.unit_index[member.cls][units].ravel())


class _Closure:
    """Closure of a root atom under the product relations, with a validity check."""

    def __init__(self, st: Structure, frozen_atom: np.ndarray):
        self.st = st
        self.frozen = frozen_atom
        self.factor_of: dict[int, list[tuple[int, int, int]]] = {}
        self.rows: list[list[np.ndarray]] = []  # rows[r][k][i]: flat atoms with coordinate k == i
        self.flat_of: dict[int, set[int]] = {}
        self.may_cover: set[int] = set()  # flat atoms big enough to be a whole slice of a product
        self.mask = np.zeros(st.n_atoms, dtype=bool)
        for r, p in enumerate(st.products):
            self.rows.append([np.moveaxis(p.flat_atoms, k, 0).reshape(p.flat_atoms.shape[k], -1)
                              for k in range(p.flat_atoms.ndim)])
            for k, fa in enumerate(p.factor_atoms):
                for i, a in enumerate(fa.tolist()):
                    self.factor_of.setdefault(a, []).append((r, k, i))
            atoms, counts = np.unique(p.flat_atoms, return_counts=True)
            smallest_slice = min(p.flat_atoms.size // n for n in p.flat_atoms.shape)
            for a, c in zip(atoms.tolist(), counts.tolist(), strict=True):
                self.flat_of.setdefault(a, set()).add(r)
                if c >= smallest_slice:
                    self.may_cover.add(a)

    def involved(self, a: int) -> bool:
        return a in self.factor_of or a in self.flat_of

    def hopeless(self, a: int) -> bool:
        """A pure flat element too small to be a whole slice never closes into a valid unit."""
        return a not in self.factor_of and a not in self.may_cover

    def __call__(self, root: int) -> set[int] | None:
        mask = self.mask
        members = [root]
        mask[root] = True
        try:
            return self._close(members)
        finally:
            mask[np.asarray(members, dtype=np.int64)] = False

    def _add(self, atoms: np.ndarray, members: list[int], stack: list[int]) -> bool:
        """Add ``atoms`` not yet in the unit; False when one is frozen (the unit is invalid: stop at once, as
        popping it later would)."""
        new = atoms[~self.mask[atoms]]
        if len(new):
            self.mask[new] = True
            members.extend(new.tolist())
            if self.frozen[new].any():
                return False
            stack.extend(new.tolist())
        return True

    def _close(self, members: list[int]) -> set[int] | None:
        st, mask = self.st, self.mask
        stack = list(members)
        touched: set[int] = set()
        while True:
            while stack:
                a = stack.pop()
                if self.frozen[a]:
                    return None
                for r, k, i in self.factor_of.get(a, ()):
                    touched.add(r)
                    if not self._add(self.rows[r][k][i], members, stack):
                        return None
                touched.update(self.flat_of.get(a, ()))
            for r in list(touched):
                p = st.products[r]
                removed = mask[p.flat_atoms]
                covered = np.zeros_like(removed)
                for k, fa in enumerate(p.factor_atoms):
                    shape = [1] * removed.ndim
                    shape[k] = -1
                    covered |= mask[fa].reshape(shape)
                if not (removed & ~covered).any():
                    continue
                for k, fa in enumerate(p.factor_atoms):
                    other = tuple(x for x in range(removed.ndim) if x != k)
                    full = removed.all(axis=other) if other else removed
                    if not self._add(fa[np.nonzero(full)[0]], members, stack):
                        return None
                if not stack:
                    return None  # removes part of a product that no factor explains
            if not stack:
                return set(members)  # members may repeat; the set removes duplicates


def find_groups(st: Structure) -> list[Group]:
    n_atoms = st.n_atoms
    frozen_atom = np.zeros(n_atoms, dtype=bool)
    for c in st.class_frozen:
        frozen_atom[st.atom[st.class_offset[c] : st.class_offset[c] + st.class_size[c]]] = True
    param_classes = np.array([c for c in st.class_params], dtype=np.int64)
    param_elem = np.isin(st.elem_class, param_classes)
    has_param = np.zeros(n_atoms, dtype=bool)
    has_param[st.atom[param_elem]] = True
    closure = _Closure(st, frozen_atom)
    elements = st.atom_elements()
    atom_size = np.bincount(st.atom, minlength=n_atoms)
    involved = np.zeros(n_atoms, dtype=bool)
    involved[np.fromiter(set(closure.factor_of) | set(closure.flat_of), dtype=np.int64)] = True
    simple = (atom_size == 1) & ~frozen_atom & ~involved & has_param
    groups = _simple_groups(st, simple)
    units: dict[frozenset[int], int] = {}
    for a in np.nonzero(~simple & ~frozen_atom)[0].tolist():
        if closure.involved(a):
            if closure.hopeless(a):
                continue
            members = closure(a)
            if members is None:
                continue
            key = frozenset(members)
        else:
            if not has_param[a]:
                continue
            key = frozenset((a,))
        units.setdefault(key, a)
    groups.extend(_group_units(st, units, elements))
    groups.sort(key=lambda g: _order_key(st, g))
    for i, g in enumerate(groups):
        g.id = i
    return groups


def _simple_groups(st: Structure, simple: np.ndarray) -> list[Group]:
    """Atoms of one element (a channel not linked by cat/split): one group per class, vectorized."""
    elem = np.nonzero(simple[st.atom])[0]
    classes = st.elem_class[elem]
    order = np.argsort(classes, kind="stable")
    elem, classes = elem[order], classes[order]
    groups: list[Group] = []
    if not len(classes):
        return groups
    starts = np.flatnonzero(np.r_[True, classes[1:] != classes[:-1]])
    for start, end in zip(starts.tolist(), np.r_[starts[1:], len(classes)].tolist(), strict=True):
        c = int(classes[start])
        local = elem[start:end] - st.class_offset[c]
        if len(local) < 2:
            continue
        members = [Member(fqn, dim, c) for fqn, dim in st.class_params[c]]
        if not any(m.fqn in st.param_fqns for m in members):
            continue  # only buffers: nothing to learn or score, and nothing worth removing
        members.sort(key=lambda m: (m.fqn not in st.param_fqns, m.fqn, m.dim))
        inexact = sorted(set(st.class_inexact.get(c, [])))
        tags = st.class_tags.get(c, set())
        kind = next((k for k in ("heads", "query_heads", "head_dim") if k in tags), "channels")
        groups.append(Group(0, kind, members, {c: np.sort(local)[:, None]}, exact=not inexact, inexact_reasons=inexact,
                            tags=set(tags)))
    return groups


def _group_units(st: Structure, units: dict[frozenset[int], int], elements: list[np.ndarray]) -> list[Group]:
    by_sig: dict[tuple[tuple[int, int], ...], list[tuple[int, dict[int, np.ndarray]]]] = {}
    for atoms, root in units.items():
        elems = np.concatenate([elements[a] for a in atoms])
        classes = st.elem_class[elems]
        per_class: dict[int, np.ndarray] = {}
        for c in np.unique(classes).tolist():
            local = np.sort(elems[classes == c] - st.class_offset[c])
            if len(local) >= st.class_size[c]:
                per_class = {}
                break
            per_class[c] = local
        if not per_class or not any(c in st.class_params for c in per_class):
            continue
        sig = tuple(sorted((c, len(v)) for c, v in per_class.items()))
        by_sig.setdefault(sig, []).append((root, per_class))
    groups: list[Group] = []
    for sig, items in by_sig.items():
        if len(items) < 2 and all(st.class_size[c] == n for c, n in sig):
            continue
        pclasses = [c for c, _ in sig if c in st.class_params]
        first = pclasses[0]
        items.sort(key=lambda it: int(it[1][first][0]))
        unit_index = {c: np.stack([it[1][c] for it in items]) for c, _ in sig}
        members = [Member(fqn, dim, c) for c in pclasses for fqn, dim in st.class_params[c]]
        if not any(m.fqn in st.param_fqns for m in members):
            continue
        members.sort(key=lambda m: (m.fqn not in st.param_fqns, m.fqn, m.dim))
        inexact = [r for c, _ in sig for r in st.class_inexact.get(c, [])]
        root_tags = _root_tags(st, items[0][0])
        kind = "channels"
        for label in ("heads", "query_heads", "head_dim"):
            if label in root_tags:
                kind = label
                break
        tags = set().union(*(st.class_tags.get(c, set()) for c, _ in sig))
        groups.append(Group(len(groups), kind, members, unit_index, exact=not inexact,
                            inexact_reasons=sorted(set(inexact)), tags=tags))
    return groups


def _root_tags(st: Structure, root_atom: int) -> set[str]:
    elems = np.nonzero(st.atom == root_atom)[0]
    tags: set[str] = set()
    for c in np.unique(st.elem_class[elems]).tolist():
        tags |= st.class_tags.get(c, set())
    return tags


def _order_key(st: Structure, g: Group) -> tuple[int, str]:
    names = list(st.coupled.captured.state_inputs.values())
    pos = {n: i for i, n in enumerate(names)}
    return (min(pos.get(m.fqn, 1 << 30) for m in g.members), g.kind)
