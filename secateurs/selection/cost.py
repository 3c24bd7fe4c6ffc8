"""Cost model: MACs and parameters as a function of how many units each group removes.

Every MAC formula of ``secateurs.graph.counting`` is a product of tensor dimension sizes (conv: output
elements x kernel elements; linear: output elements x input features; ...). Each of those dimensions
is an index space of the captured graph, and each space belongs to a class that groups shrink, so a
plan's MACs are ``sum(base * prod(kept fraction of each factor's class))``; parameters likewise. This
is exact for those ops when units of one class come from one group; ops the model does not cover
(einsum) count as fixed, and planning checks the result with ``count`` on the pruned copy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from secateurs.graph.analysis import Analysis
from secateurs.graph.capture import OpNode, Ref
from secateurs.graph.counting import graph_macs
from secateurs.graph.couple import CoupledGraph
from secateurs.graph.groups import Group
from secateurs.graph.ops import OUT, op_info


def _spaces(cg: CoupledGraph, node: OpNode, ref: Any) -> list[int]:
    name = node.name if ref == OUT else ref.name if isinstance(ref, Ref) else ref
    out = cg.spaces.get(name, [])
    return list(out[0]) if out else []


def _terms(cg: CoupledGraph, n: OpNode) -> list[list[int]]:
    """The op's MAC terms (``graph.ops``) as lists of index spaces."""
    info = op_info(n.target)
    if info is None or info.terms is None:
        return []
    out = []
    for term in info.terms(n):
        spaces = [_spaces(cg, n, ref) for ref, _ in term]
        if any(not s for s in spaces):
            continue
        out.append([s for sp, (_, dims) in zip(spaces, term, strict=True) for s in sp[dims]])
    return out


@dataclass
class _Poly:
    """sum_i base_i * prod_j frac[classes_ij] + const (classes padded with a column that reads 1.0)."""

    base: np.ndarray
    classes: np.ndarray
    const: float

    @staticmethod
    def build(terms: list[tuple[float, list[int]]], const: float, pad: int) -> _Poly:
        width = max((len(c) for _, c in terms), default=0)
        classes = np.full((len(terms), max(width, 1)), pad, dtype=np.int64)
        for i, (_, c) in enumerate(terms):
            classes[i, : len(c)] = c
        return _Poly(np.array([b for b, _ in terms], dtype=np.float64), classes, const)

    def __call__(self, frac: np.ndarray) -> float:
        return float(self.base @ np.prod(frac[self.classes], axis=1)) + self.const if len(self.base) else self.const


class CostModel:
    def __init__(self, analysis: Analysis, model: torch.nn.Module):
        st, cg = analysis.structure, analysis.coupled
        self.class_size = st.class_size.astype(np.float64)
        pad = len(self.class_size)
        sizes = cg.rel.sizes
        mac_terms: list[tuple[float, list[int]]] = []
        for n in cg.captured.nodes:
            if n.kind != "call":
                continue
            for term in _terms(cg, n):
                mac_terms.append((float(np.prod([sizes[s] for s in term])), [int(st.space_class[s]) for s in term]))
        mac_total = float(graph_macs(cg.captured))
        self.macs_poly = _Poly.build(mac_terms, mac_total - sum(b for b, _ in mac_terms), pad)
        spaces = cg.param_spaces()
        param_terms, const = [], 0.0
        seen: set[int] = set()
        for fqn, p in model.named_parameters():
            if id(p) in seen:
                continue
            seen.add(id(p))
            sp = spaces.get(fqn)
            if sp is None or len(sp) != p.ndim:
                const += p.numel()
            else:
                param_terms.append((float(p.numel()), [int(st.space_class[s]) for s in sp]))
        self.params_poly = _Poly.build(param_terms, const, pad)
        self.total_macs = self.macs_poly(self.fractions({}, []))
        self.total_params = self.params_poly(self.fractions({}, []))

    def fractions(self, removed: Mapping[int, int], groups: list[Group]) -> np.ndarray:
        """Kept fraction per class (plus a trailing 1.0) when group ``g.id`` removes ``removed[g.id]`` units."""
        gone = np.zeros(len(self.class_size) + 1)
        for g in groups:
            n = removed.get(g.id, 0)
            if n:
                for c, idx in g.unit_index.items():
                    gone[c] += n * idx.shape[1]
        frac = np.ones(len(self.class_size) + 1)
        frac[:-1] = np.clip(1.0 - gone[:-1] / np.maximum(self.class_size, 1), 0.0, 1.0)
        return frac

    def kept(self, removed: Mapping[int, int], groups: list[Group]) -> dict[str, float]:
        """Fractions of MACs and parameters kept."""
        frac = self.fractions(removed, groups)
        return {"macs": self.macs_poly(frac) / max(self.total_macs, 1.0),
                "params": self.params_poly(frac) / max(self.total_params, 1.0)}
