"""Handlers that refresh a module's attributes after its tensors were sliced, found via the MRO.

A handler is ``fn(module, hints) -> None``; ``hints`` maps argument names recorded by coupling
rules for this module (``groups``, ``num_heads``, ``normalized_shape``) to their new values, plus
``shapes_before``: the shape before pruning of every tensor under the module, by relative name
(``"qkv.weight"``), for forwards that must keep constants of the original (softmax scales).
Handlers live one module family per file in ``secateurs.surgery.handlers``; integrations (Hugging
Face) register theirs when the model comes from that library.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from secateurs.plugins import load_integrations
from secateurs.registry import Registry

Handler = Callable[[torch.nn.Module, dict[str, Any]], None]
HANDLERS: Registry[Handler] = Registry("surgery handler", package="secateurs.surgery.handlers")
register_handler = HANDLERS.register


def load_for(model: torch.nn.Module) -> None:
    """Register the integrations' handlers for the libraries ``model``'s modules come from."""
    load_integrations(model)


def find_handler(module: torch.nn.Module) -> Handler | None:
    return HANDLERS.for_type(type(module))
