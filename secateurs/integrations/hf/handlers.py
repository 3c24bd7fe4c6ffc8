"""Entry point imported by the surgery registry for models built from transformers modules.

Imports every family module of this package (each registers its handlers and its ``Family``),
and registers the root handler that writes the pruned widths back into ``model.config``.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from transformers import PreTrainedModel

import secateurs.integrations.hf as _pkg
from secateurs.integrations.hf.config_sync import sync_outermost_config_
from secateurs.surgery.registry import register_handler

for _info in pkgutil.iter_modules(_pkg.__path__):
    if not _info.name.startswith("_") and _info.name != "handlers":
        importlib.import_module(f"{_pkg.__name__}.{_info.name}")


@register_handler(PreTrainedModel)
def pretrained_model(m: Any, hints: dict[str, Any]) -> None:
    sync_outermost_config_(m, hints)
