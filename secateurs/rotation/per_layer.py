"""``rotate_per_layer=True``: one basis per stretch of the residual stream, as SliceGPT does, with shortcuts.

The stream is cut into stretches by the norms that read it: in a Llama-style block, the input of
``input_layernorm`` (the block input) and of ``post_attention_layernorm`` (after the attention residual), then the
final norm. Stretch ``k`` is read by norm ``k`` and its consumers, and written by the embeddings (``k = 0``),
``o_proj`` (the stretch after attention) or ``down_proj`` (the next block's input). Every tensor is rotated by its
stretch's principal axes ``Q_k`` (from that norm's inputs alone), and each residual skip gets the shortcut
``Q_k^T Q_{k+1}`` (``shortcuts``). Unlike SliceGPT, the axes are computed in one pass on the unrotated model, not
block by block on the already-sliced one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from secateurs.errors import PlanError
from secateurs.graph.blocks import container, find_blocks
from secateurs.rotation.pca import Axes
from secateurs.rotation.shortcuts import Site
from secateurs.rotation.stream import Norm, Stream

READERS = ("input_layernorm", "post_attention_layernorm")
WRITERS = ("self_attn.o_proj", "mlp.down_proj")


def stretches(model: nn.Module, stream: Stream) -> tuple[list[Norm], list[str], list[Site]]:
    """(norms in forward order, the Linear writing each stretch after the first, the shortcut sites)."""
    path = find_blocks(model)
    norms = {n.path: n for n in stream.norms}
    order: list[Norm] = []
    writers: list[str] = []
    sites: list[Site] = []
    for i in range(len(container(model, path))):
        block = f"{path}.{i}" if path else str(i)
        for reader, writer, name in zip(READERS, WRITERS, ("attn_shortcut", "mlp_shortcut"), strict=True):
            if f"{block}.{reader}" not in norms:
                raise PlanError(f"rotate_per_layer=True needs Llama-style blocks (input_layernorm, self_attn.o_proj, "
                                f"post_attention_layernorm, mlp.down_proj); {block} has no {reader} on the stream")
            order.append(norms.pop(f"{block}.{reader}"))
            writers.append(f"{block}.{writer}")
            sites.append(Site(block, name, f"{block}.{reader}", f"{block}.{writer}"))
    if len(norms) != 1:
        raise PlanError(f"rotate_per_layer=True expects one norm after the blocks, found {sorted(norms) or 'none'}")
    order.append(next(iter(norms.values())))
    return order, writers, sites


def member_stretch(stream: Stream, order: list[Norm], writers: list[str]) -> dict[str, int]:
    """Stream tensor FQN -> the stretch whose basis it is written in (norm scales are not rotated)."""
    out: dict[str, int] = {}
    for k, norm in enumerate(order):
        out.update(dict.fromkeys(norm.consumers, k))
    for k, writer in enumerate(writers, start=1):
        for fqn, _ in stream.members:
            if fqn.rpartition(".")[0] == writer:
                out[fqn] = k
    rest = {fqn.rpartition(".")[0] for fqn, _ in stream.members if fqn not in out} - {n.path for n in order}
    if len(rest) != 1:
        raise PlanError(f"rotate_per_layer=True: cannot tell which stretch of the stream {sorted(rest)} write; "
                        "expected only the input embeddings besides the blocks' Linears")
    for fqn, _ in stream.members:
        if fqn.rpartition(".")[0] in rest:
            out[fqn] = 0
    return out


def shortcut_weights(axes: list[Axes]) -> list[torch.Tensor]:
    """``Q_k^T Q_{k+1}`` for every residual skip, in the order of the sites."""
    return [axes[k].q.T @ axes[k + 1].q for k in range(len(axes) - 1)]


def combined_eigenvalues(axes: list[Axes]) -> torch.Tensor:
    """One score per axis index for the hidden group: each stretch's eigenvalues as fractions of its total, averaged
    (every stretch keeps its first ``d`` axes, so the scores decrease along the index)."""
    return torch.stack([a.eigenvalues / a.eigenvalues.sum().clamp(min=1e-30) for a in axes]).mean(0)


def record(sites: list[Site]) -> dict[str, Any]:
    return {"per_layer": True, "shortcuts": [s.to_dict() for s in sites]}
