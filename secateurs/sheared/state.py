"""Checkpoints of a ``sc.shear`` run: safetensors tensors and a JSON index, never pickle.

``checkpoint_dir`` holds ``model.safetensors`` (the weights being trained), ``shear.safetensors`` (masks, Lagrange
multipliers and every optimizer's tensors) and ``shear.json`` (step, target, history, optimizer hyper-parameters,
random and data-domain state). Each file is written to a temporary name and renamed, the JSON last, so an
interrupted write leaves the previous checkpoint whole.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from secateurs._version import __version__
from secateurs.errors import FileFormatError

KIND, FORMAT = "secateurs.shear", 1
INDEX, MODEL, TENSORS = "shear.json", "model.safetensors", "shear.safetensors"


@dataclass
class Trainer:
    """What a checkpoint restores: the modules and optimizers of a run, by name."""

    model: nn.Module
    modules: dict[str, nn.Module]  # "masks", "lagrangian"
    optimizers: dict[str, torch.optim.Optimizer]


def _write(path: Path, write: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def _optimizer_tensors(name: str, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entry in sd["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{name}.{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def save(directory: str | os.PathLike[str], trainer: Trainer, index: dict[str, Any]) -> None:
    """Write the checkpoint (call on one rank)."""
    from safetensors.torch import save_file, save_model

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for name, module in trainer.modules.items():
        tensors.update({f"{name}.{k}": v.detach().cpu().contiguous() for k, v in module.state_dict().items()})
    optimizers = {}
    for name, opt in trainer.optimizers.items():
        t, meta = _optimizer_tensors(f"opt.{name}", opt)
        tensors.update(t)
        optimizers[name] = meta
    _write(d / MODEL, lambda p: save_model(trainer.model, str(p)))
    _write(d / TENSORS, lambda p: save_file(tensors, str(p)))
    doc = {"kind": KIND, "format": FORMAT, "version": __version__, **index, "optimizers": optimizers}
    _write(d / INDEX, lambda p: p.write_text(json.dumps(doc, indent=1)))


def read(directory: str | os.PathLike[str] | None) -> dict[str, Any] | None:
    if directory is None or not (Path(directory) / INDEX).is_file():
        return None
    path = Path(directory) / INDEX
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise FileFormatError(f"{path} is not a readable shear checkpoint: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("kind") != KIND or doc.get("format") != FORMAT:
        raise FileFormatError(f"{path} is not a secateurs shear checkpoint of format {FORMAT}")
    return doc


def restore_(directory: str | os.PathLike[str], trainer: Trainer, doc: dict[str, Any]) -> None:
    """Load the weights, masks, multipliers and optimizer states a checkpoint holds."""
    from safetensors.torch import load_file, load_model

    d = Path(directory)
    for name in (MODEL, TENSORS):
        if not (d / name).is_file():
            raise FileFormatError(f"{d / name} is missing: the shear checkpoint in {d} is incomplete")
    missing, unexpected = load_model(trainer.model, str(d / MODEL), strict=False)
    if missing or unexpected:
        raise FileFormatError(f"{d / MODEL} does not fit the model (missing {sorted(missing)[:4]}, unexpected "
                              f"{sorted(unexpected)[:4]}): resume with the model the run started from")
    tensors = load_file(str(d / TENSORS))
    for name, module in trainer.modules.items():
        prefix = f"{name}."
        module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    for name, opt in trainer.optimizers.items():
        meta = doc["optimizers"][name]
        state: dict[int, dict[str, Any]] = {}
        prefix = f"opt.{name}."
        for key, value in tensors.items():
            if key.startswith(prefix):
                pid, _, field = key[len(prefix):].partition(".")
                state.setdefault(int(pid), {})[field] = value
        for pid, scalars in meta["scalars"].items():
            state.setdefault(int(pid), {}).update(scalars)
        opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
