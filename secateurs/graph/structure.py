"""From relations to structure: space classes (union-find), element atoms, products."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from secateurs.graph.couple import CoupledGraph
from secateurs.graph.shuffle import shuffled_factors


def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    m = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    _, labels = connected_components(m, directed=False)
    return labels.astype(np.int64)


@dataclass
class Product:
    flat: int  # class id
    factors: tuple[int, ...]  # class ids, row-major
    flat_atoms: np.ndarray  # atoms of flat elements, shaped by factor sizes
    factor_atoms: tuple[np.ndarray, ...]


@dataclass
class Structure:
    coupled: CoupledGraph
    space_class: np.ndarray
    class_size: np.ndarray
    class_offset: np.ndarray
    elem_class: np.ndarray
    atom: np.ndarray  # atom id per element
    n_atoms: int
    products: list[Product]
    class_frozen: dict[int, list[str]]
    class_inexact: dict[int, list[str]]
    class_tags: dict[int, set[str]]
    class_params: dict[int, list[tuple[str, int]]]  # class -> [(fqn, dim)] of parameters and buffers
    param_fqns: set[str]  # trainable parameters (buffers are sliced, not scored)

    def atom_elements(self) -> list[np.ndarray]:
        order = np.argsort(self.atom, kind="stable")
        bounds = np.searchsorted(self.atom[order], np.arange(self.n_atoms + 1))
        return [order[bounds[i] : bounds[i + 1]] for i in range(self.n_atoms)]


def build_structure(coupled: CoupledGraph) -> Structure:
    rel = coupled.rel
    n_spaces = len(rel.sizes)
    same = np.array(rel.same, dtype=np.int64).reshape(-1, 2)
    space_class = _components(n_spaces, same[:, 0], same[:, 1])
    n_classes = int(space_class.max()) + 1 if n_spaces else 0
    sizes = np.asarray(rel.sizes, dtype=np.int64)
    class_size = np.zeros(n_classes, dtype=np.int64)
    class_size[space_class] = sizes
    _check_sizes(space_class, sizes, class_size, coupled)
    class_offset = np.concatenate([[0], np.cumsum(class_size)[:-1]]).astype(np.int64)
    elem_class = np.repeat(np.arange(n_classes), class_size)
    n_elem = int(class_size.sum())
    ea, eb = [], []
    for a, ai, b, bi in rel.links:
        ea.append(class_offset[space_class[a]] + ai)
        eb.append(class_offset[space_class[b]] + bi)
    atom = _components(n_elem, np.concatenate(ea) if ea else np.zeros(0, np.int64),
                       np.concatenate(eb) if eb else np.zeros(0, np.int64))
    n_atoms = int(atom.max()) + 1 if n_elem else 0
    products: list[Product] = []
    seen: set[tuple[int, tuple[int, ...]]] = set()
    for flat, factors in rel.products:
        fc = int(space_class[flat])
        kcs = tuple(int(space_class[f]) for f in factors)
        if (fc, kcs) in seen:
            continue
        seen.add((fc, kcs))
        shape = tuple(int(class_size[k]) for k in kcs)
        flat_atoms = atom[class_offset[fc] + np.arange(class_size[fc]).reshape(shape)]
        factor_atoms = tuple(atom[class_offset[k] + np.arange(class_size[k])] for k in kcs)
        products.append(Product(fc, kcs, flat_atoms, factor_atoms))

    def by_class(d: dict[int, list[str]]) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for s, reasons in d.items():
            out.setdefault(int(space_class[s]), []).extend(reasons)
        return out

    class_frozen = by_class(rel.frozen)
    for c, reasons in shuffled_factors(coupled, space_class, set(class_frozen)).items():
        class_frozen.setdefault(c, []).extend(reasons)
    tags: dict[int, set[str]] = {}
    for s, t in rel.tags.items():
        tags.setdefault(int(space_class[s]), set()).update(t)
    _propagate_head_tags(products, tags)
    class_params: dict[int, list[tuple[str, int]]] = {}
    for fqn, spaces in coupled.param_spaces().items():
        for d, s in enumerate(spaces):
            class_params.setdefault(int(space_class[s]), []).append((fqn, d))
    params = {fqn for ph, fqn in coupled.captured.state_inputs.items() if coupled.captured.state_kinds[ph] == "parameter"}
    return Structure(coupled, space_class, class_size, class_offset, elem_class, atom, n_atoms, products,
                     class_frozen, by_class(rel.inexact), tags, class_params, params)


def _propagate_head_tags(products: list[Product], tags: dict[int, set[str]]) -> None:
    """A heads dim that is a product (GQA repeat): outer factor = KV groups, inner = query heads."""
    for p in products:
        if "heads" in tags.get(p.flat, set()) and len(p.factors) == 2:
            outer, inner = p.factors
            if not tags.get(outer):
                tags.setdefault(outer, set()).add("heads")
            if not tags.get(inner):
                tags.setdefault(inner, set()).add("query_heads")


def _check_sizes(space_class: np.ndarray, sizes: np.ndarray, class_size: np.ndarray, coupled: CoupledGraph) -> None:
    bad = np.nonzero(class_size[space_class] != sizes)[0]
    if len(bad):
        owner = coupled.rel.owners[int(bad[0])]
        raise RuntimeError(f"internal: joined dimensions of different sizes near node {owner}")
