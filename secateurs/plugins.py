"""Integration modules loaded for a model: the libraries its modules come from register their extras.

A model with transformers modules loads ``secateurs.integrations.hf.handlers`` (surgery handlers, depth
adapters, coupling opt-ins), one with torchvision modules its handler module (timm needs none: the
attributes its forward() reads are found and rewritten by ``secateurs.graph.bindings``). Importing by name
keeps every lower layer free of imports of ``secateurs.integrations`` (and of those libraries).
"""

from __future__ import annotations

import importlib

from torch import nn

#: root package of a module's class -> the secateurs integration module that registers its extras
INTEGRATIONS = {
    "transformers": "secateurs.integrations.hf.handlers",
    "torchvision": "secateurs.integrations.torchvision.handlers",
}


def load_integrations(model: nn.Module) -> None:
    """Import the integration modules of the libraries ``model``'s modules come from (idempotent)."""
    roots = {type(m).__module__.split(".")[0] for m in model.modules()}
    for root, module in INTEGRATIONS.items():
        if root in roots:
            importlib.import_module(module)
