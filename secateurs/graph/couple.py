"""Run the coupling rules over a captured graph and record every relation between index spaces."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from secateurs.graph import rules
from secateurs.graph.bindings import Bindings, bind
from secateurs.graph.capture import Captured, OpNode, Ref
from secateurs.graph.context import RuleContext
from secateurs.graph.literals import Literal, find_literals
from secateurs.graph.meta import tensor_shape
from secateurs.graph.relations import Relations
from secateurs.graph.residual import tag_residual_streams


@dataclass
class Frozen:
    op: str
    where: str
    reason: str


@dataclass
class CoupledGraph:
    captured: Captured
    rel: Relations
    spaces: dict[str, list[list[int]]]
    unknown_ops: list[Frozen] = field(default_factory=list)
    literals: list[Literal] = field(default_factory=list)  # sizes written into op arguments (view shapes)
    bindings: Bindings | None = None  # how forward() computed each literal (module attributes, tensor sizes)

    def param_spaces(self) -> dict[str, list[int]]:
        """FQN of each parameter/buffer -> its spaces (one per dim)."""
        out: dict[str, list[int]] = {}
        for ph, fqn in self.captured.state_inputs.items():
            if self.captured.state_kinds[ph] in ("parameter", "buffer") and ph in self.spaces:
                out[fqn] = self.spaces[ph][0]
        return out


def _allocate(node: OpNode, rel: Relations, data_sized: set[tuple[str, int, int]]) -> list[list[int]]:
    value = node.value
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    result = []
    for k, item in enumerate(items):
        shape = tensor_shape(item)
        result.append([] if shape is None else [rel.new_space(n, (node.name, k, d)) for d, n in enumerate(shape)])
        for d, s in enumerate(result[-1]):
            if (node.name, k, d) in data_sized:  # a count of tokens (routed to an expert), not a channel
                rel.frozen.setdefault(s, []).append(
                    f"size depends on the input values ({rel.sizes[s]} on the example inputs) at {node.where()}")
    return result


def couple(captured: Captured) -> CoupledGraph:
    rel = Relations()
    spaces: dict[str, list[list[int]]] = {}
    users: dict[str, list[OpNode]] = {}
    for node in captured.nodes:
        spaces[node.name] = _allocate(node, rel, captured.data_sized)
    for node in captured.nodes:
        for ref in RuleContext(node, rel, spaces, users).tensor_refs():
            users.setdefault(ref.name, []).append(node)
    graph = CoupledGraph(captured, rel, spaces)
    used_alias = {ph for group in captured.aliases if any(users.get(g) for g in group) for ph in group}
    for group in captured.aliases:  # tied tensors: every dim is one space whatever each use says
        first = spaces[group[0]][0]
        for other in group[1:]:
            rel.same.extend(zip(first, spaces[other][0], strict=True))
    for node in captured.nodes:
        if node.kind == "input":
            kind = captured.state_kinds.get(node.name)
            if kind is None:
                for s in spaces[node.name][0] if spaces[node.name] else []:
                    rel.frozen.setdefault(s, []).append(f"model input '{node.name}'")
            elif kind == "constant":
                for s in spaces[node.name][0] if spaces[node.name] else []:
                    rel.frozen.setdefault(s, []).append(f"constant tensor '{captured.state_inputs[node.name]}'")
            elif not users.get(node.name) and node.name not in used_alias:
                for s in spaces[node.name][0] if spaces[node.name] else []:
                    rel.frozen.setdefault(s, []).append(f"'{captured.state_inputs[node.name]}' is not used by forward()")
            else:  # parameters and buffers: the masked original zeroes their removed slices along every dim
                rel.zero.update(spaces[node.name][0] if spaces[node.name] else [])
            continue
        _apply_rule(graph, node, users)
    tag_residual_streams(graph)
    graph.literals = find_literals(captured, spaces, rel.node_hints, rel.sizes)
    graph.bindings = bind(captured, spaces, graph.literals)
    for out in captured.outputs:
        if isinstance(out, Ref):
            for s in spaces.get(out.name, [[]])[0]:
                rel.frozen.setdefault(s, []).append("model output (kept so outputs keep their shapes)")
    return graph


def _apply_rule(graph: CoupledGraph, node: OpNode, users: dict[str, list[OpNode]]) -> None:
    rel, spaces = graph.rel, graph.spaces
    ctx = RuleContext(node, rel, spaces, users, graph.captured.by_name)
    rule = rules.lookup(node.target)
    if node.target == "getitem":  # reads one element of a tuple-valued node
        involved = list(ctx.spaces(node.args[0], int(node.args[1])))
    else:
        involved = [s for ref in ctx.tensor_refs() for s in ctx.spaces(ref)]
    involved += [s for outs in spaces[node.name] for s in outs]
    if rule is None and not involved and not isinstance(node.value, torch.Tensor):
        return  # arithmetic on sizes or values (``u0 + u1``, ``u0 >= 0`` of a data-dependent size): no dims to couple
    if rule is None:
        reason = f"no coupling rule for {node.target}"
        graph.unknown_ops.append(Frozen(node.target, node.where(), reason))
        for s in involved:
            rel.frozen.setdefault(s, []).append(f"{reason} at {node.where()}")
        return
    n_same, n_links, n_products = len(rel.same), len(rel.links), len(rel.products)
    try:
        rule(ctx)
    except Exception as exc:  # a rule that cannot handle this call freezes it rather than guessing
        del rel.same[n_same:], rel.links[n_links:], rel.products[n_products:]
        rel.zero.difference_update(involved)
        reason = f"coupling rule for {node.target} failed ({type(exc).__name__}: {exc})"
        graph.unknown_ops.append(Frozen(node.target, node.where(), reason))
        for s in involved:
            rel.frozen.setdefault(s, []).append(f"{reason} at {node.where()}")
        return
    for s in involved:
        if s not in ctx.mentioned:
            rel.frozen.setdefault(s, []).append(f"rule for {node.target} left this dimension unmapped at {node.where()}")
