"""Apply mask values to a decoder with forward hooks, without touching its code.

* ``query_heads`` / ``kv_heads``: the attention output entering ``o_proj`` (heads x head_dim) is scaled per head,
  by the key/value group's value times the query position's value (query head ``h`` is position ``h % group``
  of group ``h // group``, as ``repeat_kv`` lays them out);
* ``ffn``: the input of ``down_proj`` per neuron;
* ``layers``: both outputs a block adds to the stream (``o_proj`` and ``down_proj``), so a 0 makes the block the
  identity;
* ``hidden``: the embeddings and both outputs, per hidden dim, so the whole stream carries the mask.

The values live in ``MaskValues.current`` (a dict of structure name -> tensor), set before every forward.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from secateurs.sheared.layout import Layout


class MaskValues:
    def __init__(self) -> None:
        self.current: dict[str, torch.Tensor] = {}


def head_scale(values: dict[str, torch.Tensor], layout: Layout, layer: int) -> torch.Tensor | None:
    kv, q = values.get("kv_heads"), values.get("query_heads")
    if kv is None and q is None:
        return None
    kv_l = kv[layer] if kv is not None else torch.ones(layout.kv_heads)
    q_l = q[layer] if q is not None else torch.ones(layout.group_size)
    return (kv_l.to(q_l.device)[:, None] * q_l[None, :]).reshape(-1)  # (heads,)


def _stream_scale(values: dict[str, torch.Tensor], layer: int) -> torch.Tensor | None:
    layers, hidden = values.get("layers"), values.get("hidden")
    if layers is None:
        return hidden
    return layers[layer] if hidden is None else layers[layer] * hidden


def _scaled(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * scale.to(device=x.device, dtype=x.dtype)


@contextlib.contextmanager
def masked(layout: Layout, values: MaskValues) -> Iterator[None]:
    """Within the block, forwards of the model apply ``values.current``."""
    handles: list[Any] = []

    def heads_in(layer: int) -> Any:
        def hook(mod: nn.Module, args: tuple[Any, ...]) -> Any:
            scale = head_scale(values.current, layout, layer)
            if scale is None:
                return None
            x = args[0]
            shaped = x.reshape(*x.shape[:-1], layout.heads, layout.head_dim)
            return (_scaled(shaped, scale[:, None]).reshape(x.shape), *args[1:])
        return hook

    def ffn_in(layer: int) -> Any:
        def hook(mod: nn.Module, args: tuple[Any, ...]) -> Any:
            ffn = values.current.get("ffn")
            return None if ffn is None else (_scaled(args[0], ffn[layer]), *args[1:])
        return hook

    def stream_out(layer: int) -> Any:
        def hook(mod: nn.Module, args: Any, out: torch.Tensor) -> Any:
            scale = _stream_scale(values.current, layer)
            return None if scale is None else _scaled(out, scale)
        return hook

    def embed_out(mod: nn.Module, args: Any, out: torch.Tensor) -> Any:
        hidden = values.current.get("hidden")
        return None if hidden is None else _scaled(out, hidden)

    try:
        for i, (attn, mlp) in enumerate(zip(layout.attn_out, layout.mlp_out, strict=True)):
            handles.append(attn.register_forward_pre_hook(heads_in(i)))
            handles.append(mlp.register_forward_pre_hook(ffn_in(i)))
            handles.append(attn.register_forward_hook(stream_out(i)))
            handles.append(mlp.register_forward_hook(stream_out(i)))
        handles.append(layout.embed.register_forward_hook(embed_out))
        yield
    finally:
        for h in handles:
            h.remove()
