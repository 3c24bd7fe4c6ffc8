"""Find residual streams: sums of two activations that come from different weighted layers.

A dim of such a sum is tagged ``"residual"``; selection calls channel groups with that tag ``hidden``
(the width of the residual stream: a transformer's hidden size, a ResNet stage's channels) and the
others ``ffn``. Sums whose operands derive from the same weighted layers (RoPE's ``q*cos +
rotate_half(q)*sin``, tanh-GELU's ``x + 0.044715*x**3``) are not residual connections.
"""

from __future__ import annotations

from typing import Any

from secateurs.graph.capture import Ref, refs_in
from secateurs.graph.relations import Relations

SUMS = ("aten.add.", "aten.sub.")



def tag_residual_streams(graph: Any) -> None:
    """Tag with ``"residual"`` every output dim of a sum whose activation operands have different sources."""
    captured, rel, spaces = graph.captured, graph.rel, graph.spaces
    state = set(captured.state_inputs)
    sources: dict[str, frozenset[str]] = {}
    for node in captured.nodes:
        refs = [r for r in (*refs_in(node.args), *refs_in(node.kwargs)) if r.name in sources or r.name in state]
        if node.kind == "input":
            sources[node.name] = frozenset() if node.name in state else frozenset({node.name})
            continue
        if not refs or any(r.name in state for r in refs):
            sources[node.name] = frozenset({node.name})  # a weighted layer (or a constant creation) starts a path
        else:
            sources[node.name] = frozenset().union(*(sources[r.name] for r in refs))
        if node.target.startswith(SUMS):
            _tag(node, refs, sources, spaces, rel)


def _tag(node: Any, refs: list[Ref], sources: dict[str, frozenset[str]], spaces: dict[str, list[list[int]]],
         rel: Relations) -> None:
    out = spaces.get(node.name) or [[]]
    shape = [rel.sizes[s] for s in out[0]]
    acts = [r for r in refs if r.name in sources and sources[r.name]
            and [rel.sizes[s] for s in (spaces.get(r.name) or [[]])[0]] == shape]
    if len(acts) >= 2 and len({sources[r.name] for r in acts}) > 1:
        for s in out[0]:
            rel.tags.setdefault(s, set()).add("residual")
