"""The exact oracle of layer dropping: the original model with the dropped blocks replaced by identity.

A forward hook makes each dropped block return its input hidden state (in the same output structure),
so for a residual block ``x + f(x)`` (or pre-norm ``x + attn(..) + mlp(..)``) this is the block with its
residual branches zeroed. Nothing of the model is changed; hooks are removed on exit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from torch import nn

from secateurs.depth.criteria import hidden_in
from secateurs.graph.blocks import container


def _passthrough(mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Any:
    x = hidden_in(args, kwargs)
    if x is None:
        return out
    if isinstance(out, tuple):
        return (x, *out[1:])
    if isinstance(out, list):
        return [x, *out[1:]]
    return x


@contextlib.contextmanager
def bypassed(model: nn.Module, dropped: dict[str, list[int]]) -> Iterator[None]:
    """Run ``model`` as if the ``dropped`` blocks were identity functions."""
    handles = []
    try:
        for path, gone in dropped.items():
            blocks = container(model, path)
            for i in gone:
                handles.append(blocks[i].register_forward_hook(_passthrough, with_kwargs=True))
        yield
    finally:
        for h in handles:
            h.remove()
