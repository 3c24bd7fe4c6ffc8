"""Whole mixture-of-experts experts as units (kind ``"experts"``), found from the graph.

A router is a weighted linear whose output dim ``E`` goes to ``topk``: the top-k *indices* are values that
name experts. Following those values (through reshapes, sorts, casts and gathers) to where they size or index
other tensors finds every dim that counts experts: a histogram of expert ids (``histc(bins=E)``, then the
offsets of a grouped matrix product and the expert dim of its stacked weights), a gather of per-expert biases by
expert id, a ``one_hot(num_classes=E)``. Removing expert ``e`` removes row ``e`` of the router and slice ``e``
of every such tensor; the coupling rules cannot join these dims (they meet only through values), so the group is
built here.

Removing an expert equals masking its router logit to ``-inf`` (it is never selected and takes no softmax mass):
``verification/experts.py`` checks plans that way. ``top_k`` experts are always kept.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from secateurs.graph.capture import OpNode, Ref
from secateurs.graph.groups import Group, Member
from secateurs.graph.structure import Structure

#: ops whose output values are the (rearranged) values of their first operand
_VALUE_PASS = ("aten.view", "aten.reshape", "aten._unsafe_view", "aten.flatten", "aten.clone", "aten.contiguous",
               "aten.to.", "aten._to_copy", "aten.unsqueeze", "aten.squeeze", "aten.select", "aten.slice",
               "aten.permute", "aten.transpose", "aten.detach", "aten.alias", "aten.clamp", "aten.clamp_max",
               "aten.clamp_min", "aten.index.Tensor",
               "aten.expand", "aten.lift_fresh_copy")


def _is(target: str, names: tuple[str, ...]) -> bool:
    return any(target.startswith(n if n.endswith(".") else n + ".") or target == n for n in names)


def _ref(value: Any) -> str | None:
    return value.name if isinstance(value, Ref) else None


class _Routes:
    """Value provenance: which router space (``E``) a tensor's values index, and which dims count experts."""

    def __init__(self, st: Structure):
        self.st = st
        self.spaces = st.coupled.spaces
        self.values: dict[str, int] = {}  # node -> router space its values index
        self.topk: dict[int, OpNode] = {}  # router space -> its topk node
        self.expert_dims: dict[int, int] = {}  # space -> router space it counts

    def space(self, name: str | None, dim: int) -> int | None:
        outs = self.spaces.get(name or "") or [[]]
        dims = outs[0]
        return dims[dim] if -len(dims) <= dim < len(dims) else None

    def walk(self, nodes: list[OpNode]) -> None:
        by_name = {n.name: n for n in nodes}
        for node in nodes:
            if node.kind != "call":
                continue
            t = node.target
            if _is(t, ("aten.topk",)):
                s = self.space(_ref(node.args[0]), int(node.args[2]) if len(node.args) > 2 else -1)
                if s is not None:
                    self.topk[s] = node
            elif t == "getitem":
                src = by_name.get(_ref(node.args[0]) or "")
                if src is not None and _is(src.target, ("aten.topk",)) and node.args[1] == 1:
                    s = self.space(src.name and _ref(src.args[0]), int(src.args[2]) if len(src.args) > 2 else -1)
                    if s is not None:
                        self.values[node.name] = s
                elif src is not None and _is(src.target, ("aten.sort",)) and node.args[1] == 0:
                    self._pass(node, _ref(src.args[0]))
            elif _is(t, _VALUE_PASS):
                self._pass(node, _ref(node.args[0]))
            self._sinks(node)

    def _pass(self, node: OpNode, source: str | None) -> None:
        if source in self.values:
            self.values[node.name] = self.values[source]

    def _sinks(self, node: OpNode) -> None:
        t, args = node.target, node.args
        source = _ref(args[0]) if args else None
        if _is(t, ("aten.histc",)) and source in self.values:
            self._count(self.space(node.name, 0), self.values[source])
        elif _is(t, ("aten.one_hot",)) and source in self.values:
            self._count(self.space(node.name, -1), self.values[source])
        elif _is(t, ("aten.cumsum", "aten.to.", "aten._to_copy")) and source is not None:
            s = self.space(source, 0)
            if s in self.expert_dims:
                self._count(self.space(node.name, 0), self.expert_dims[s])
        elif _is(t, ("transformers.grouped_mm_fallback", "aten._grouped_mm")):
            offs = args[2] if len(args) > 2 else node.kwargs.get("offs")
            s = self.space(_ref(offs), 0)
            if s in self.expert_dims:
                self._count(self.space(_ref(args[1]), 0), self.expert_dims[s])
        elif _is(t, ("aten.index.Tensor",)) and len(args) > 1:
            for pos, idx in enumerate(args[1]):
                if _ref(idx) in self.values:
                    self._count(self.space(source, pos), self.values[_ref(idx) or ""])

    def _count(self, space: int | None, router: int) -> None:
        if space is not None and self.st.coupled.rel.sizes[space] == self.st.coupled.rel.sizes[router]:
            self.expert_dims[space] = router


def expert_groups(st: Structure, first_id: int) -> list[Group]:
    """One ``"experts"`` group per router whose experts are all found and whose dims stay inside the model."""
    routes = _Routes(st)
    routes.walk(st.coupled.captured.nodes)
    linked: dict[int, set[int]] = {}
    for space, router in routes.expert_dims.items():
        linked.setdefault(router, set()).add(int(st.space_class[space]))
    groups: list[Group] = []
    for router, classes in sorted(linked.items()):
        g = _group(st, router, classes | {int(st.space_class[router])}, routes.topk.get(router), first_id + len(groups))
        if g is not None:
            groups.append(g)
    return groups


def _group(st: Structure, router: int, classes: set[int], topk: OpNode | None, gid: int) -> Group | None:
    size = int(st.coupled.rel.sizes[router])
    rc = int(st.space_class[router])
    if topk is None or any(int(st.class_size[c]) != size for c in classes):
        return None
    if any("model output" in r or "model input" in r for c in classes for r in st.class_frozen.get(c, [])):
        return None  # router logits returned by the model: removing experts would change an output's shape
    ndim = {f: len(spaces) for f, spaces in st.coupled.param_spaces().items()}
    weights = [(f, d) for f, d in st.class_params.get(rc, []) if d == 0 and f in st.param_fqns and ndim.get(f) == 2]
    experts = [c for c in classes if c != rc and any(f in st.param_fqns for f, _ in st.class_params.get(c, []))]
    if not weights or not experts:
        return None
    members = [Member(f, d, c) for c in sorted(classes) for f, d in st.class_params.get(c, [])]
    members.sort(key=lambda m: (m.cls != rc, m.fqn not in st.param_fqns, m.fqn, m.dim))
    k = int(topk.args[1]) if len(topk.args) > 1 and isinstance(topk.args[1], int) else 1
    units = np.arange(size, dtype=np.int64)[:, None]
    return Group(gid, "experts", members, {c: units for c in sorted(classes)}, exact=True,
                 tags={"experts"}, min_units=k, meta={"router": weights[0][0], "top_k": k})
