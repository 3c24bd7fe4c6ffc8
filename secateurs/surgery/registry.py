"""Handlers that refresh a module's attributes after its tensors were sliced, found via the MRO.

A handler is ``fn(module, hints) -> None``; ``hints`` maps argument names recorded by coupling
rules for this module (``groups``, ``num_heads``, ``normalized_shape``) to their new values, plus
``shapes_before``: the shape before pruning of every tensor under the module, by relative name
(``"qkv.weight"``), for forwards that must keep constants of the original (softmax scales).
Handlers live one module family per file in ``secateurs.surgery.handlers``; integrations (Hugging
Face) register theirs when the model comes from that library.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

import torch

from secateurs.plugins import load_integrations

Handler = Callable[[torch.nn.Module, dict[str, Any]], None]
_HANDLERS: dict[type, Handler] = {}
_LOADED = False


def register_handler(*types: type) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        for t in types:
            if t in _HANDLERS and _HANDLERS[t] is not fn:
                raise RuntimeError(f"surgery handler for {t.__qualname__} registered twice")
            _HANDLERS[t] = fn
        return fn

    return deco


def _load_builtin() -> None:
    global _LOADED
    if not _LOADED:
        import secateurs.surgery.handlers as pkg

        for info in pkgutil.iter_modules(pkg.__path__):
            importlib.import_module(f"{pkg.__name__}.{info.name}")
        _LOADED = True


def load_for(model: torch.nn.Module) -> None:
    """Register built-in handlers, plus those of integrations the model's modules come from."""
    _load_builtin()
    load_integrations(model)


def find_handler(module: torch.nn.Module) -> Handler | None:
    _load_builtin()
    for cls in type(module).__mro__:
        if cls in _HANDLERS:
            return _HANDLERS[cls]
    return None


def registered_handlers() -> dict[type, Handler]:
    _load_builtin()
    return dict(_HANDLERS)
