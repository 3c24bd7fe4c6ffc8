"""Whole mixture-of-experts experts as units (kind ``"experts"``), found from the graph.

A router is a weighted linear whose output dim ``E`` goes to a selection (``topk``, ``max``, ``argmax``): the
positions it picks are values that name experts. Following those values (through reshapes, sorts, casts,
gathers, ``where``, concatenation) to where they size or index other tensors finds every dim that counts experts:
a histogram of expert ids (``histc(bins=E)``, then the offsets of a grouped matrix product and the expert dim of
its stacked weights), a ``one_hot(num_classes=E)``, a ``scatter`` at expert ids, a gather or ``select`` of
per-expert weights by id, including ids an eager loop reads back from the experts it hits (``nonzero``). Dims
that factor the same flattened dim as a counted one at the same position count experts too (dense routing:
Llama-4), and so do weights an unrolled loop over every expert picks by constant position
(``graph/expert_loops.py``). A router may have rows past its experts (zero or skip experts, a shared expert's
gate split off by ``logits[..., :-1]``): experts are its first rows, and the expert count forward() writes next
to expert ids is returned as a literal so attribute bindings rewrite it. Removing expert ``e`` removes row ``e``
of the router and slice ``e`` of every such tensor; the coupling rules cannot join these dims (they meet only
through values), so the group is built here.

Removing an expert equals masking its router logit to ``-inf`` (it is never selected and takes no softmax mass):
``verification/experts.py`` checks plans that way. ``top_k`` experts are always kept.
"""

from __future__ import annotations

import functools

import numpy as np

from secateurs.graph.capture import OpNode, op_in, ref_name, refs_in
from secateurs.graph.expert_loops import UnrolledLoops
from secateurs.graph.groups import Group, Member
from secateurs.graph.literals import Literal
from secateurs.graph.structure import Structure

#: ops whose output values are the (rearranged) values of their first operand
_VALUE_PASS = ("aten.view", "aten.reshape", "aten._unsafe_view", "aten.flatten", "aten.clone", "aten.contiguous",
               "aten.to.", "aten._to_copy", "aten.unsqueeze", "aten.squeeze", "aten.select", "aten.slice",
               "aten.permute", "aten.transpose", "aten.detach", "aten.alias", "aten.clamp", "aten.clamp_max",
               "aten.clamp_min", "aten.index.Tensor",
               "aten.expand", "aten.lift_fresh_copy", "aten.masked_fill", "aten.unbind", "aten.item",
               "aten._local_scalar_dense")
#: ops that keep a per-expert vector per expert (``hit = counts.sum(...) > 0``)
_KEEP_EXPERTS = ("aten.greater", "aten.gt", "aten.ge", "aten.ne", "aten.eq", "aten.to.", "aten._to_copy",
                 "aten.abs", "aten.logical_not", "aten.bitwise_not")
_COMPARE = ("aten.ge", "aten.gt", "aten.le", "aten.lt", "aten.eq", "aten.ne")
#: arithmetic and comparisons on expert ids (zero or skip experts past the routed ones: ``ids >= num_experts``)
_ID_MATH = (*_COMPARE, "aten.sub", "aten.add", "aten.mul", "aten.floor_divide", "aten.div", "aten.remainder",
            "aten.bitwise_not", "aten.logical_not")
#: ops that pick positions along a dim (their second output, or the output of argmax)
_SELECT = ("aten.topk", "aten.max.dim")


class _Routes:
    """Value provenance: which router (class of its logits' expert dim) a tensor's values index, and which dim
    classes count that router's experts."""

    def __init__(self, st: Structure):
        self.st = st
        self.spaces = st.coupled.spaces
        self.values: dict[str, int] = {}  # node -> router class its values index
        self.picks: dict[int, dict[str, int]] = {}  # router class -> selecting node -> experts it picks per token
        self.expert_dims: dict[int, int] = {}  # class -> router class it counts
        self.heads: dict[int, int] = {}  # class -> class it is the leading part of (``logits[..., :-shared]``)
        self.derived: dict[str, int] = {}  # node -> router class: numbers computed from expert ids
        self.per_expert: dict[str, int] = {}  # node -> router class: a 1-D tensor with one entry per expert
        self.numbers: list[tuple[OpNode, str, int, int]] = []  # (node, arg key, int written, router class)
        self.loops = UnrolledLoops(self)

    def space(self, name: str | None, dim: int) -> int | None:
        outs = self.spaces.get(name or "") or [[]]
        dims = outs[0]
        return dims[dim] if -len(dims) <= dim < len(dims) else None

    def cls(self, name: str | None, dim: int) -> int | None:
        s = self.space(name, dim)
        return None if s is None else int(self.st.space_class[s])

    def walk(self, nodes: list[OpNode]) -> None:
        by_name = {n.name: n for n in nodes}
        for node in nodes:
            if node.kind != "call":
                continue
            t = node.target
            if t == "getitem":
                src = by_name.get(ref_name(node.args[0]) or "")
                if src is not None and node.args[1] == 1 and op_in(src.target, _SELECT):
                    self._select(node, src)
                elif src is not None and op_in(src.target, ("aten.sort",)) and node.args[1] == 0:
                    self._pass(node, ref_name(src.args[0]))
                else:  # one of several outputs holding ids (unbind, split)
                    self._pass(node, ref_name(node.args[0]))
            elif op_in(t, ("aten.nonzero",)) and ref_name(node.args[0]) in self.per_expert:
                self.values[node.name] = self.per_expert[ref_name(node.args[0]) or ""]  # the experts where it is set
            elif op_in(t, ("aten.argmax",)):
                self._select(node, node)
            elif op_in(t, ("aten.slice",)):
                self._head(node)
            elif op_in(t, ("aten.where",)) and len(node.args) > 2:
                self._where(node)
            elif op_in(t, _ID_MATH):
                self._math(node)
            elif op_in(t, ("aten.cat", "aten.concat", "aten.concatenate")):
                self._cat(node)
            elif op_in(t, _VALUE_PASS):
                self._pass(node, ref_name(node.args[0]))
            self._sinks(node)
            self._per_expert(node)
            self.loops.visit(node, by_name)
        self.loops.finish()

    def _per_expert(self, node: OpNode) -> None:
        """A 1-D tensor along a dim that counts experts (tokens per expert), and what keeps it so (``> 0``)."""
        dims = (self.spaces.get(node.name) or [[]])[0]
        if len(dims) != 1:
            return
        c = int(self.st.space_class[dims[0]])
        source = ref_name(node.args[0]) if node.args else None
        if c in self.expert_dims:
            self.per_expert[node.name] = self.expert_dims[c]
        elif source in self.per_expert and op_in(node.target, _KEEP_EXPERTS):
            self.per_expert[node.name] = self.per_expert[source or ""]

    def _select(self, out: OpNode, op: OpNode) -> None:
        """``out`` holds the positions along a router's expert dim that ``op`` (top-k, max, argmax) picked."""
        args, kwargs = op.args, op.kwargs
        if op_in(op.target, ("aten.topk",)):
            dim, k = (args[2] if len(args) > 2 else kwargs.get("dim", -1)), args[1] if len(args) > 1 else None
        else:  # max.dim / argmax: one position per row
            dim, k = (args[1] if len(args) > 1 else kwargs.get("dim")), 1
        c = self.cls(ref_name(args[0]), dim) if isinstance(dim, int) else None
        if c is not None and isinstance(k, int):
            self.picks.setdefault(c, {})[op.name] = k
            self.values[out.name] = c

    def _where(self, node: OpNode) -> None:
        """``where(cond, ids_a, ids_b)``: expert ids where either branch holds them (the other branch remaps zero
        experts onto real ones, with zero weight)."""
        branches = [self.values.get(ref_name(a) or "") for a in node.args[1:3]]
        found = {b for b in branches if b is not None}
        if len(found) == 1:
            self.values[node.name] = found.pop()
        self._math(node)

    def _math(self, node: OpNode) -> None:
        """Numbers computed from expert ids, and the ints forward() wrote next to them (an expert count)."""
        routers = {self.values.get(r.name, self.derived.get(r.name)) for r in refs_in(node.args)} - {None}
        if len(routers) != 1:
            return
        router = routers.pop()
        if node.name not in self.values:
            self.derived[node.name] = router  # type: ignore[assignment]
        for i, a in enumerate(node.args):
            if type(a) is int:
                self.numbers.append((node, f"args.{i}", a, router))  # type: ignore[arg-type]

    def literals(self, group: Group) -> list[Literal]:
        """The expert count written next to expert ids as a literal of the experts' space, so attribute bindings
        rewrite the attribute it came from: ids compared with it (``ids >= 4`` for zero experts past 4 routed ones,
        ``id == num_experts`` for a sentinel), and, where the router has rows past the experts, arithmetic that
        maps those rows onto experts (``(ids - 4) * 4 // zeros``)."""
        n = group.n_units
        counted = [c for c in group.unit_index if int(self.st.class_size[c]) == n]
        router = next((r for c in counted if (r := self.expert_dims.get(c)) is not None), None)
        if not counted or router is None:
            return []
        extra_rows = int(self.st.class_size[router]) > n
        space = int(np.nonzero(self.st.space_class == counted[0])[0][0])
        return [Literal(node.name, node.target, key, ((space, 1),), scalar=True)
                for node, key, value, r in self.numbers
                if r == router and value == n and (extra_rows or op_in(node.target, _COMPARE))]

    def _head(self, node: OpNode) -> None:
        """``x[..., :-m]``: the leading part of a dim, with a bound written from the end, so it stays the part
        before the last ``m`` rows however many rows are removed before them."""
        args = node.args
        start = args[2] if len(args) > 2 else 0
        end = args[3] if len(args) > 3 else None
        step = args[4] if len(args) > 4 else 1
        if start in (0, None) and isinstance(end, int) and end < 0 and step == 1 and isinstance(args[1], int):
            out, src = self.cls(node.name, args[1]), self.cls(ref_name(args[0]), args[1])
            if out is not None and src is not None:
                self.heads[out] = src

    @functools.cached_property
    def ndim(self) -> dict[str, int]:
        """Rank of every parameter and buffer, by FQN."""
        return {f: len(spaces) for f, spaces in self.st.coupled.param_spaces().items()}

    def weight_class(self, router: int) -> int | None:
        """The class of a router's weight rows: the router's own, or the one its logits are the leading part of."""
        ndim = self.ndim
        seen: set[int] = set()
        c: int | None = router
        while c is not None and c not in seen:
            seen.add(c)
            if any(d == 0 and f in self.st.param_fqns and ndim.get(f) == 2 for f, d in self.st.class_params.get(c, [])):
                return c
            c = self.heads.get(c)
        return None

    def _pass(self, node: OpNode, source: str | None) -> None:
        if source in self.values:
            self.values[node.name] = self.values[source]

    def _cat(self, node: OpNode) -> None:
        """Positions picked by several selections of one router, concatenated (a second max after masking the
        first pick)."""
        parts = {self.values.get(ref_name(p) or "") for p in (node.args[0] if node.args else [])}
        if len(parts) == 1 and None not in parts:
            self.values[node.name] = parts.pop()  # type: ignore[assignment]

    def _sinks(self, node: OpNode) -> None:
        t, args = node.target, node.args
        source = ref_name(args[0]) if args else None
        if op_in(t, ("aten.histc",)) and source in self.values:
            self.count(self.cls(node.name, 0), self.values[source])
        elif op_in(t, ("aten.one_hot",)) and source in self.values:
            self.count(self.cls(node.name, -1), self.values[source])
        elif op_in(t, ("aten.cumsum", "aten.to.", "aten._to_copy")) and source is not None:
            c = self.cls(source, 0)
            if c in self.expert_dims:
                self.count(self.cls(node.name, 0), self.expert_dims[c])
        elif op_in(t, ("transformers.grouped_mm_fallback", "aten._grouped_mm")):
            offs = args[2] if len(args) > 2 else node.kwargs.get("offs")
            c = self.cls(ref_name(offs), 0)
            if c in self.expert_dims:
                self.count(self.cls(ref_name(args[1]), 0), self.expert_dims[c])
        elif op_in(t, ("aten.scatter",)) and len(args) > 2 and ref_name(args[2]) in self.values:
            self.count(self.cls(node.name, int(args[1])), self.values[ref_name(args[2]) or ""])  # one-hot by scatter
        elif op_in(t, ("aten.select.int",)) and len(args) > 2 and ref_name(args[2]) in self.values:
            self.count(self.cls(source, int(args[1])), self.values[ref_name(args[2]) or ""])  # weights[expert_id]
        elif op_in(t, ("aten.index.Tensor",)) and len(args) > 1:
            for pos, idx in enumerate(args[1]):
                if ref_name(idx) in self.values:
                    self.count(self.cls(source, pos), self.values[ref_name(idx) or ""])

    def count(self, c: int | None, router: int) -> None:
        if c is not None and self.st.class_size[c] <= self.st.class_size[router]:
            self.expert_dims[c] = router  # the first ``size(c)`` of the router's positions

    def dense(self) -> None:
        """Dims that count experts because they factor the same flat dim as one that does, at the same position
        with the same sizes: a router's dense ``[experts, tokens]`` scores flattened to ``experts * tokens`` rows
        and multiplied into the tokens repeated once per expert, then viewed as ``[experts, tokens, hidden]`` for
        a batched product with the stacked expert weights (Llama-4)."""
        counted = dict(self.expert_dims)
        counted.update({r: r for r in self.picks})
        by_flat: dict[int, list[tuple[int, ...]]] = {}
        for p in self.st.products:
            by_flat.setdefault(p.flat, []).append(p.factors)
        changed = True
        while changed:
            changed = False
            for factorings in by_flat.values():
                for a in factorings:
                    for b in factorings:
                        if a == b or len(a) != len(b):
                            continue
                        if any(self.st.class_size[x] != self.st.class_size[y] for x, y in zip(a, b, strict=True)):
                            continue
                        for x, y in zip(a, b, strict=True):
                            if x in counted and y not in counted:
                                counted[y] = self.expert_dims[y] = counted[x]
                                changed = True


def expert_groups(st: Structure, first_id: int) -> tuple[list[Group], list[Literal]]:
    """One ``"experts"`` group per router whose experts are all found and whose dims stay inside the model, and
    the expert counts written into the graph next to expert ids (see ``_Routes.literals``)."""
    routes = _Routes(st)
    routes.walk(st.coupled.captured.nodes)
    routes.dense()
    linked: dict[int, set[int]] = {}
    for c, router in routes.expert_dims.items():
        if c != router:
            linked.setdefault(router, set()).add(c)
    groups: list[Group] = []
    literals: list[Literal] = []
    for router, classes in sorted(linked.items()):
        picks = routes.picks.get(router)
        if not picks:
            continue
        k = max(max(picks.values()), len(picks))  # top-k, or one max per pick
        weight = routes.weight_class(router)
        g = None if weight is None else _group(st, weight, classes | {router, weight}, k, first_id + len(groups),
                                               routes.ndim)
        if g is not None:
            groups.append(g)
            literals += routes.literals(g)
    return groups, literals


def _group(st: Structure, rc: int, classes: set[int], k: int, gid: int, ndim: dict[str, int]) -> Group | None:
    """Experts ``0 .. n-1`` of every class, ``n`` the experts' count: a router may hold more rows after them (zero or
    skip experts, shared experts' gates), which stay."""
    experts = [c for c in classes if c != rc and any(f in st.param_fqns for f, _ in st.class_params.get(c, []))]
    sizes = {int(st.class_size[c]) for c in experts}
    if len(sizes) != 1 or any(int(st.class_size[c]) < min(sizes) for c in classes):
        return None
    if any("model output" in r or "model input" in r for c in classes for r in st.class_frozen.get(c, [])):
        return None  # router logits returned by the model: removing experts would change an output's shape
    members = [Member(f, d, c) for c in sorted(classes) for f, d in st.class_params.get(c, [])]
    members.sort(key=lambda m: (m.cls != rc, m.fqn not in st.param_fqns, ndim.get(m.fqn) != 2, m.fqn, m.dim))
    units = np.arange(sizes.pop(), dtype=np.int64)[:, None]
    return Group(gid, "experts", members, {c: units for c in sorted(classes)}, exact=True,
                 tags={"experts"}, min_units=k, meta={"router": members[0].fqn, "top_k": k})
