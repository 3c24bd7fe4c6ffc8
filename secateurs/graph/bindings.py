"""Which module attributes produce which sizes in the captured graph.

``graph/literals.py`` ties each size written into an op (``reshape(x, [1, 197, 3, 4, 64])``) to the index spaces it
measures, so its value after pruning is known. ``graph/tracking.py`` recorded, during the capture, how forward()
computed each number it passed to the call that made the node (``4`` is ``blocks.0.attn.num_heads``, ``64`` is
``layer_norm.shape[2] // blocks.0.attn.num_heads``). This module joins the two: every literal element gets the
expression that produced it, the *binding* ``graph/solve.py`` inverts to find the attribute values that give the
pruned sizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from secateurs.graph.capture import Captured, OpNode
from secateurs.graph.literals import Literal
from secateurs.graph.provenance import Attr, Const, Dim, Expr, leaves
from secateurs.graph.tracking import Call, Number


@dataclass(frozen=True)
class Element:
    """One element of a literal size argument: its value as written, the space whose size it must equal
    (``multiple * size(space)``) and how forward() computed it: ``Const`` when forward() passed it as a plain
    number, None when it is not among the call's numbers (computed inside torch)."""

    node: str
    op: str
    module: str  # path of the module whose forward() ran the op ("" for the root)
    key: str  # "args.1", "kwargs.size"
    index: int  # element of a list argument (0 for a scalar)
    written: int
    space: int
    multiple: int
    expr: Expr | None
    call: int | None  # index into Bindings.calls
    position: int | None  # index into that call's numbers


@dataclass
class Bindings:
    elements: list[Element]
    calls: list[Call]  # every call forward() made with numbers among its arguments, each once
    values: dict[Attr, Number]  # attribute values at capture time (tuple attributes element by element)
    originals: dict[tuple[str, str], Any]  # (module path, attribute) -> its value at capture time
    dim_space: dict[Dim, int]  # the index space of every tensor size forward() read
    handled: set[str] = field(default_factory=set)  # module paths a surgery handler refreshes (set by planning)
    active: bool = True  # False for a captured program (its literals are rewritten in the graph instead)

    def attributes_of(self, module: str) -> dict[str, Any]:
        return {name: v for (owner, name), v in self.originals.items() if owner == module}


def _trace_names(captured: Captured) -> dict[str, str]:
    """Tracer node name -> captured node name (nodes inlined from a sub-graph carry its name as a prefix)."""
    out: dict[str, str] = {}
    for name in captured.by_name:
        out.setdefault(name.rsplit(".", 1)[-1], name)
        out[name] = name
    return out


def _arg(node: OpNode, key: str) -> Any:
    kind, _, where = key.partition(".")
    return node.args[int(where)] if kind == "args" else node.kwargs.get(where)


def _locate(written: Sequence[int], scalar: bool, numbers: Sequence[tuple[Number, Expr | None]]) -> list[int | None]:
    """Positions in ``numbers`` of each written element: a contiguous run for a list, the one matching
    number (or several with one expression) for a scalar."""
    values = [v for v, _ in numbers]
    n = len(written)
    if not scalar:
        for p in range(len(values) - n + 1):
            if all(type(values[p + i]) is int and values[p + i] == w for i, w in enumerate(written)):
                return [p + i for i in range(n)]
        return [None] * n
    hits = [p for p, v in enumerate(values) if type(v) is int and v == written[0]]
    exprs = {numbers[p][1] for p in hits}
    return [hits[0] if hits and len(exprs) == 1 else None]


def bind(captured: Captured, spaces: dict[str, list[list[int]]], literals: Sequence[Literal]) -> Bindings:
    """Every literal element of the graph with the expression forward() computed it from."""
    names = _trace_names(captured)
    calls: list[Call] = []
    call_index: dict[int, int] = {}
    for call in captured.calls.values():
        if id(call) not in call_index:
            call_index[id(call)] = len(calls)
            calls.append(call)
    by_node = {names[n]: c for n, c in captured.calls.items() if n in names}
    elements: list[Element] = []
    for lit in literals:
        node = captured.by_name[lit.node]
        written = _arg(node, lit.key)
        if lit.op.startswith("aten.chunk"):
            continue  # a number of pieces, not a size: equal pieces stay as many
        if type(written) is int and not lit.scalar:  # split(x, width): every piece as wide
            values = [written] * len(lit.terms)
        else:
            values = [written] if lit.scalar else list(written) if isinstance(written, (list, tuple)) else []
        if len(values) != len(lit.terms) or not all(type(v) is int for v in values):
            continue
        made = by_node.get(lit.node)
        if made is None:
            where: list[int | None] = [None] * len(values)
        elif type(written) is int and not lit.scalar:
            where = _locate([written], True, made.numbers) * len(values)
        else:
            where = _locate(values, lit.scalar, made.numbers)
        for i, (term, value, p) in enumerate(zip(lit.terms, values, where, strict=True)):
            if term is None:
                continue
            expr = (made.numbers[p][1] or Const(value)) if made is not None and p is not None else None
            elements.append(Element(lit.node, lit.op, node.module_path, lit.key, i, int(value), term[0], term[1], expr,
                                    call_index[id(made)] if made is not None and p is not None else None, p))
    dim_space: dict[Dim, int] = {}
    for call in calls:
        for _, expr in call.numbers:
            for leaf in leaves(expr) if expr is not None else ():
                if isinstance(leaf, Dim) and leaf not in dim_space:
                    outs = spaces.get(names.get(leaf.node, ""), [])
                    if leaf.output < len(outs) and leaf.dim < len(outs[leaf.output]):
                        dim_space[leaf] = outs[leaf.output][leaf.dim]
    return Bindings(elements, calls, dict(captured.attribute_values), dict(captured.attribute_originals), dim_space)
