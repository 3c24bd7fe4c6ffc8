"""Find intermediate widths (an MLP's hidden neurons, a CNN block's inner channels) and tag them ``"ffn"``.

A class of index spaces is an intermediate width when, in the captured graph:

* a weighted contraction produces it (output features of a linear/matmul/conv/grouped matmul whose other
  operand is a parameter, seen through views and transposes),
* a weighted contraction consumes it (its contracted input features),
* between them only per-channel ops touch it: no product of activations (attention scores, ``q @ k.T``),
  no normalisation or softmax over it (those are ``inexact``), no reshape that splits it into heads
  or merges it with another prunable dim (a product whose other factors are not trivial), and it is not
  a residual stream (``hidden``).

Widths that do not lead back into a residual stream (a pooler, a classifier head) are not FFNs either.
Attention projections (``q``/``k``/``v`` head channels, fused ``qkv``), low-rank attention projections that are
normalised (DeepSeek's MLA ``q_a``/``kv_a``), sequence-reduction convolutions followed by a LayerNorm (SegFormer)
fail one of these tests; gated MLPs (``act(gate) * up``, fused ``gate_up`` chunks), CNN bottlenecks and the
feed-forward of every MoE expert pass.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from secateurs.graph.capture import OpNode, Ref, op_in, refs_in
from secateurs.graph.structure import Structure

#: ops through which a parameter is still "a weight" (views, layout, dtype, expert selection)
_VIEWS = ("aten.view", "aten.reshape", "aten._unsafe_view", "aten.t.", "aten.t", "aten.transpose", "aten.permute",
          "aten.unsqueeze", "aten.squeeze", "aten.expand", "aten.contiguous", "aten.clone", "aten._to_copy",
          "aten.to.", "aten.alias", "aten.detach", "aten.select", "aten.slice", "aten.index", "aten.lift_fresh_copy",
          "aten.flatten", "aten.unflatten", "aten.mT", "aten.numpy_T", "aten.movedim", "aten.float", "getitem")
_MATMUL = ("aten.matmul", "aten.mm", "aten.bmm")
_ADDMM = ("aten.addmm", "aten.baddbmm")
_CONV = ("aten.conv1d", "aten.conv2d", "aten.conv3d", "aten.convolution", "aten._convolution",
         "aten.conv_transpose1d", "aten.conv_transpose2d", "aten.conv_transpose3d")
_GROUPED = ("transformers.grouped_mm_fallback", "aten._grouped_mm", "aten.grouped_mm")
_ATTENTION = ("aten.scaled_dot_product_attention", "aten._scaled_dot_product")



def _weights(nodes: list[OpNode], state: dict[str, str], kinds: dict[str, str]) -> set[str]:
    """Nodes whose value is a parameter seen through views (single tensor operand ops of ``_VIEWS``; a scalar operand,
    like the expert index a loop over experts reads with ``item()``, is no tensor)."""
    out = {ph for ph, kind in kinds.items() if kind == "parameter" and ph in state}
    scalars = {n.name for n in nodes if n.kind == "call" and not isinstance(n.value, (torch.Tensor, list, tuple))}
    for node in nodes:
        if node.kind != "call" or not op_in(node.target, _VIEWS):
            continue
        refs = list(refs_in(node.args[:1]))
        others = [r for r in refs_in((node.args[1:], tuple(node.kwargs.values()))) if r.name not in scalars]
        if refs and refs[0].name in out and not [r for r in others if r.name not in out]:
            out.add(node.name)
    return out


def _contraction(node: OpNode, spaces: dict[str, list[list[int]]], weights: set[str]
                 ) -> tuple[list[int], list[int], list[int]]:
    """(produced feature spaces, consumed feature spaces, spaces of an activation-by-activation product)."""
    t = node.target

    def sp(value: Any) -> list[int]:
        return spaces.get(value.name, [[]])[0] if isinstance(value, Ref) else []

    out = (spaces.get(node.name) or [[]])[0]
    if op_in(t, ("aten.linear",)):
        x, w = node.args[0], node.args[1]
        if isinstance(w, Ref) and w.name in weights and sp(x) and out:
            return [out[-1]], [sp(x)[-1]], []
        return [], [], sp(x) + sp(w) + out
    if op_in(t, _MATMUL + _ADDMM + _GROUPED):
        a, b = (node.args[1], node.args[2]) if op_in(t, _ADDMM) else (node.args[0], node.args[1])
        a_s, b_s = sp(a), sp(b)
        if isinstance(b, Ref) and b.name in weights and a_s and out:
            return [out[-1]], [a_s[-1]], []
        if isinstance(a, Ref) and a.name in weights and len(b_s) >= 2 and len(out) >= 2:
            return [out[-2]], [b_s[-2]], []
        return [], [], a_s + b_s + out
    if op_in(t, _CONV):
        x, w = node.args[0], node.args[1]
        xs = sp(x)
        cx = 1 if len(xs) == len(sp(w)) else 0
        if isinstance(w, Ref) and w.name in weights and len(xs) > cx and len(out) > cx:
            return [out[cx]], [xs[cx]], []
        return [], [], []
    if op_in(t, _ATTENTION) or op_in(t, ("aten.einsum",)) and not any(
            r.name in weights for r in refs_in(node.args[1:])):
        return [], [], [s for r in refs_in(node.args) for s in sp(r)] + out
    return [], [], []


def ffn_classes(st: Structure) -> set[int]:
    """Classes that are intermediate widths (see the module docstring)."""
    coupled = st.coupled
    captured = coupled.captured
    weights = _weights(captured.nodes, captured.state_inputs, captured.state_kinds)
    n = len(st.class_size)
    produced, consumed, mixed = (np.zeros(n, dtype=bool) for _ in range(3))
    feeds: dict[int, set[int]] = {}  # consumed class -> classes the consuming layers produce
    fed_by: dict[int, set[int]] = {}  # produced class -> classes the producing layers consume
    for node in captured.nodes:
        if node.kind != "call":
            continue
        prod, cons, bad = _contraction(node, coupled.spaces, weights)
        produced[st.space_class[prod]] = True
        consumed[st.space_class[cons]] = True
        mixed[st.space_class[bad]] = True
        for c in st.space_class[cons].tolist():
            feeds.setdefault(int(c), set()).update(int(p) for p in st.space_class[prod].tolist())
        for p in st.space_class[prod].tolist():
            fed_by.setdefault(int(p), set()).update(int(c) for c in st.space_class[cons].tolist())
    feeds_joined = {c: set(fed) for c, fed in feeds.items()}  # through fused pieces too (for the far test)
    broken: set[int] = set()
    attention: set[int] = set()  # fused pieces of attention: no way through for the far test
    for p in st.products:
        nontrivial = [c for c in p.factors if st.class_size[c] > 1 and c not in st.class_frozen
                      and "conv_groups" not in st.class_tags.get(c, set())]
        if len(nontrivial) > 1:
            broken.update((p.flat, *p.factors))  # a reshape into heads, or a merge with another prunable dim
        elif nontrivial:  # equal pieces (a fused gate/up chunk): the width is the one non-trivial factor
            f = nontrivial[0]
            produced[[f, p.flat]] |= produced[p.flat] | produced[f]
            consumed[[f, p.flat]] |= consumed[p.flat] | consumed[f]
            for edges in (feeds_joined, fed_by):
                joined = edges.get(f, set()) | edges.get(p.flat, set())
                if joined:
                    edges[f] = edges[p.flat] = joined
            if mixed[f] or mixed[p.flat]:  # q/k/v pieces of a fused projection: attention either way
                attention.update((f, p.flat))
    ok = produced & consumed & ~mixed
    ok[list(broken)] = False
    for c, labels in st.class_tags.items():
        if "residual" in labels:
            ok[c] = False
    for c in st.class_inexact:
        ok[c] = False
    blocked = {int(c) for c in np.nonzero(mixed)[0]} | broken | attention  # scores and heads: no way through
    return _writing_back(st, {int(c) for c in np.nonzero(ok)[0]}, feeds, feeds_joined, fed_by, blocked)


def _writing_back(st: Structure, found: set[int], feeds: dict[int, set[int]], feeds_joined: dict[int, set[int]],
                  fed_by: dict[int, set[int]], blocked: set[int]) -> set[int]:
    """In a model with residual streams, the widths of a branch off a residual stream and back into one: their
    layers lead back through other intermediate widths (an MLP, a bottleneck, every expert), or through any
    weighted layers when layers from a residual stream also lead to them (MuSE-Spark's experts in a wider,
    normalised space between two projections), never through attention (products of activations, heads). A pooler or a classifier head after the last block is not an FFN,
    nor a feature extractor before the first (wav2vec2's convolutions)."""
    residual = {c for c, labels in st.class_tags.items() if "residual" in labels}
    if not residual:
        return found  # plain stacks (VGG, DenseNet's concatenations): every intermediate width
    near = _reach(residual, feeds, found)
    far = (_reach(residual, feeds_joined, set(feeds_joined) - blocked)
           & _reach(residual, fed_by, set(fed_by) - blocked))
    return found & (near | far)


def _reach(start: set[int], edges: dict[int, set[int]], through: set[int]) -> set[int]:
    """``start`` and the classes of ``through`` with an edge to a class already reached, repeatedly."""
    reached = set(start)
    changed = True
    while changed:
        changed = False
        for c in through - reached:
            if edges.get(c, set()) & reached:
                reached.add(c)
                changed = True
    return reached


def tag_ffn_(st: Structure) -> None:
    """Add the ``"ffn"`` tag to every intermediate-width class of ``st``."""
    for c in ffn_classes(st):
        st.class_tags.setdefault(c, set()).add("ffn")
