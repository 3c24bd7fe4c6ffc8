"""Data-aware starting values for the masks: each unit's share of what it writes to the residual stream.

On a few batches (no gradients), with hooks at the places the masks act:

* ``ffn`` neurons and ``query_heads`` / ``kv_heads``: ``sqrt(sum_c E[x_c^2] * ||W[:, c]||^2)`` over the unit's input
  channels ``c`` of ``down_proj`` / ``o_proj`` (the norm of the unit's contribution, Wanda's diagonal form); a key/value
  group sums its query heads, a query position sums its heads over the groups;
* ``layers``: the mean over tokens of ``||attention + MLP output|| / ||block input||`` (what the block adds);
* ``hidden``: the root of the energy written into each hidden dim by the embeddings and every block.

``ranked_log_alpha`` turns scores into ``log_alpha``: the masks' usual start ``init_log_alpha(keep)`` plus
``spread * (rank - mean rank)``, ranks in [0, 1] within each set, so the masks start ordered by importance and
the Lagrangian closes the least important first, with the mean start unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn

from secateurs.graph.blocks import container
from secateurs.graph.capture import model_inputs
from secateurs.recovery import distributed as D
from secateurs.sheared.layout import Layout
from secateurs.sheared.masks import Structure, init_log_alpha


class _Sums:
    def __init__(self, layout: Layout) -> None:
        n = layout.n_layers
        self.attn_in = torch.zeros(n, layout.heads * layout.head_dim, dtype=torch.float64)
        self.mlp_in = torch.zeros(n, layout.ffn, dtype=torch.float64)
        self.written = torch.zeros(layout.hidden, dtype=torch.float64)
        self.block_ratio = torch.zeros(n, dtype=torch.float64)
        self.block_out: list[torch.Tensor | None] = [None] * n
        self.block_in: list[torch.Tensor | None] = [None] * n
        self.batches = 0


def _mean_square(x: torch.Tensor) -> torch.Tensor:
    return x.detach().double().reshape(-1, x.shape[-1]).pow(2).mean(0)


@contextlib.contextmanager
def _recording(model: nn.Module, layout: Layout, sums: _Sums) -> Iterator[None]:
    handles: list[Any] = []

    def into(layer: int, kind: str) -> Any:
        def hook(mod: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> None:
            (sums.attn_in if kind == "attn" else sums.mlp_in)[layer] += _mean_square(args[0])
            sums.written.add_(_mean_square(out))
            prev = sums.block_out[layer]
            sums.block_out[layer] = out.detach() if prev is None else prev + out.detach()
        return hook

    def block_in(layer: int) -> Any:
        def hook(mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            x = args[0] if args else kwargs.get("hidden_states")
            sums.block_in[layer] = x.detach() if isinstance(x, torch.Tensor) else None
            sums.block_out[layer] = None
        return hook

    def embed(mod: nn.Module, args: Any, out: torch.Tensor) -> None:
        sums.written.add_(_mean_square(out))

    blocks = list(container(model, layout.blocks_path))
    try:
        for i, (attn, mlp, block) in enumerate(zip(layout.attn_out, layout.mlp_out, blocks, strict=True)):
            handles.append(attn.register_forward_hook(into(i, "attn")))
            handles.append(mlp.register_forward_hook(into(i, "mlp")))
            handles.append(block.register_forward_pre_hook(block_in(i), with_kwargs=True))
        handles.append(layout.embed.register_forward_hook(embed))
        yield
    finally:
        for h in handles:
            h.remove()


def _close_batch(sums: _Sums) -> None:
    for i, (x, out) in enumerate(zip(sums.block_in, sums.block_out, strict=True)):
        if x is not None and out is not None and out.shape == x.shape:
            ratio = out.double().norm(dim=-1) / x.double().norm(dim=-1).clamp(min=1e-12)
            sums.block_ratio[i] += ratio.mean()
    sums.block_in = [None] * len(sums.block_in)
    sums.block_out = [None] * len(sums.block_out)
    sums.batches += 1


def _mean_over_ranks(t: torch.Tensor) -> torch.Tensor:
    if not D.is_distributed():
        return t
    import torch.distributed as dist

    t = t.clone()
    dist.all_reduce(t)
    return t / D.world_size()


def unit_scores(model: nn.Module, layout: Layout, batches: Iterable[Any],
                structs: list[Structure]) -> dict[str, torch.Tensor]:
    """One score per unit of every structure (the masks' shapes), larger = more important."""
    sums = _Sums(layout)
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad(), _recording(model, layout, sums):
            for batch in batches:
                args, kwargs = model_inputs(model, batch)
                model(*args, **kwargs)
                _close_batch(sums)
    finally:
        for m, flag in flags:
            m.training = flag
    flat = torch.cat([sums.attn_in.flatten(), sums.mlp_in.flatten(), sums.written, sums.block_ratio])
    flat = _mean_over_ranks(flat)
    n, d = layout.n_layers, layout.heads * layout.head_dim
    attn_in = flat[:n * d].reshape(n, d)
    mlp_in = flat[n * d:n * d + n * layout.ffn].reshape(n, layout.ffn)
    written = flat[n * d + n * layout.ffn:-n]
    ratio = flat[-n:]
    out: dict[str, torch.Tensor] = {}
    for s in structs:
        if s.name == "layers":
            out[s.name] = ratio
        elif s.name == "hidden":
            out[s.name] = written.sqrt()
        elif s.name == "ffn":
            cols = torch.stack([m.get_parameter("weight").detach().double().pow(2).sum(0) for m in layout.mlp_out])
            out[s.name] = (mlp_in * cols).sqrt()
        else:
            cols = torch.stack([m.get_parameter("weight").detach().double().pow(2).sum(0) for m in layout.attn_out])
            heads = (attn_in * cols).reshape(n, layout.kv_heads, layout.group_size, layout.head_dim).sum(-1)
            out[s.name] = (heads.sum(2) if s.name == "kv_heads" else heads.sum(1)).sqrt()
    return {k: v.float() for k, v in out.items()}


def ranked_log_alpha(scores: torch.Tensor, keep: float, spread: float) -> torch.Tensor:
    """``log_alpha`` ordered like ``scores`` along the last dim (ties: the lower index ranks higher)."""
    rows = scores.reshape(-1, scores.shape[-1])
    n = rows.shape[-1]
    ranks = torch.zeros_like(rows, dtype=torch.float32)
    for r in range(rows.shape[0]):
        row = rows[r].tolist()
        order = sorted(range(n), key=lambda i: (row[i], -i))  # noqa: B023  (ascending importance, used at once)
        ranks[r, order] = torch.arange(n, dtype=torch.float32) / max(n - 1, 1)
    return (init_log_alpha(keep) + spread * (ranks - ranks.mean(-1, keepdim=True))).reshape(scores.shape)
