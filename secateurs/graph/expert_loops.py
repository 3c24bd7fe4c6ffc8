"""Experts run by a Python loop over every expert, unrolled in the captured graph (JetMoE's parallel experts).

``for i in range(num_experts): out.append(F.linear(pieces[i], self.weight[i]))`` with ``pieces`` the tokens split
by the count each expert got: the expert ids never index the weights; the loop's constant ``i`` does, and the
``i``-th piece is as long as the ``i``-th count. So a weight dim counts experts when every one of its positions
``i`` is selected by a constant and multiplied with the ``i``-th piece of a split whose sizes are the router's
per-expert counts, read one by one (``counts.tolist()``), in order.
"""

from __future__ import annotations

from typing import Protocol

from secateurs.graph.capture import OpNode, op_in, ref_name
from secateurs.graph.structure import Structure


class Routes(Protocol):
    """What the loop finder reads of ``graph/experts.py``'s value provenance, and how it reports a dim."""

    st: Structure
    per_expert: dict[str, int]

    def cls(self, name: str | None, dim: int) -> int | None: ...

    def count(self, c: int | None, router: int) -> None: ...

_CARRY = ("aten.to.", "aten._to_copy", "aten.contiguous", "aten.clone", "aten.alias", "aten.detach")
_PRODUCT = ("aten.linear", "aten.matmul", "aten.mm")


class UnrolledLoops:
    def __init__(self, routes: Routes):
        self.routes = routes
        self.kth: dict[str, tuple[int, int]] = {}  # node -> (router, k): the count of expert k
        self.splits: dict[str, int] = {}  # split node -> router whose per-expert counts size its pieces
        self.pieces: dict[str, tuple[int, int]] = {}  # node -> (router, k): the rows of expert k
        self.selected: dict[str, tuple[str, int, int]] = {}  # node -> (placeholder, dim, constant position)
        self.seen: dict[tuple[str, int, int], set[int]] = {}  # (placeholder, dim, router) -> positions matched

    def visit(self, node: OpNode, by_name: dict[str, OpNode]) -> None:
        t, args = node.target, node.args
        source = ref_name(args[0]) if args else None
        per_expert = self.routes.per_expert
        if t == "getitem" and source is not None:
            src = by_name.get(source)
            if src is not None and op_in(src.target, ("aten.unbind",)) and ref_name(src.args[0]) in per_expert:
                self.kth[node.name] = (per_expert[ref_name(src.args[0]) or ""], int(args[1]))
            elif source in self.splits:
                self.pieces[node.name] = (self.splits[source], int(args[1]))
        elif op_in(t, ("aten.select.int",)) and len(args) > 2 and isinstance(args[2], int):
            if source in per_expert and args[1] == 0:
                self.kth[node.name] = (per_expert[source or ""], args[2])
            elif source in self.routes.st.coupled.captured.state_inputs:
                self.selected[node.name] = (source or "", int(args[1]), args[2])
        elif op_in(t, ("aten.item", "aten._local_scalar_dense")) and source in self.kth:
            self.kth[node.name] = self.kth[source or ""]
        elif op_in(t, ("aten.split_with_sizes",)) and len(args) > 1:
            self._split(node)
        elif op_in(t, _CARRY) and source is not None:
            for table in (self.pieces, self.selected):
                if source in table:
                    table[node.name] = table[source]  # type: ignore[assignment]
        elif op_in(t, _PRODUCT) and len(args) > 1:
            piece, weight = self.pieces.get(ref_name(args[0]) or ""), self.selected.get(ref_name(args[1]) or "")
            if piece is not None and weight is not None and piece[1] == weight[2]:
                self.seen.setdefault((weight[0], weight[1], piece[0]), set()).add(piece[1])
        if source in self.pieces and node.name not in self.pieces and self._same_rows(node, source or ""):
            self.pieces[node.name] = self.pieces[source or ""]  # an activation or a product: still expert k's rows

    def _same_rows(self, node: OpNode, source: str) -> bool:
        a, b = self.routes.cls(node.name, 0), self.routes.cls(source, 0)
        return a is not None and a == b

    def _split(self, node: OpNode) -> None:
        counts = [self.kth.get(ref_name(s) or "") for s in node.args[1]] if isinstance(node.args[1], list) else []
        routers = {c[0] for c in counts if c is not None}
        if counts and None not in counts and len(routers) == 1 and [c[1] for c in counts] == list(range(len(counts))):  # type: ignore[index]
            self.splits[node.name] = routers.pop()

    def finish(self) -> None:
        """Count every weight dim whose positions were all matched with their expert's rows."""
        st = self.routes.st
        for (placeholder, dim, router), positions in self.seen.items():
            c = self.routes.cls(placeholder, dim)
            if c is not None and positions == set(range(int(st.class_size[c]))):
                self.routes.count(c, router)
