"""Checkpoints of an iterative pruning run: safetensors weights + a JSON list of plans, no pickle.

Layout of ``checkpoint_dir``::

    checkpoint.json        format, original fingerprint, schedule, settings, completed steps, plans
    step_003.safetensors   weights after the last completed step (prune + recovery)

Plan ``k`` applies to the model as it was after step ``k - 1``, so replaying the plans on a fresh copy of
the original model rebuilds the pruned shapes, and the weights file fills them. Files are written to a
temporary name and renamed, and the JSON is written after the weights it names, so a crash at any point
leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from secateurs._version import __version__
from secateurs.errors import FileFormatError
from secateurs.plans import Plan

FORMAT = 1
KIND = "secateurs.iterative_prune"
INDEX = "checkpoint.json"


@dataclass
class Checkpoint:
    fingerprint: str  # of the original, unpruned model
    steps: list[Any]  # cumulative ratios of the whole schedule
    settings: dict[str, Any]
    plans: list[Plan]  # one per completed step
    weights: str  # file name inside the directory

    @property
    def completed(self) -> int:
        return len(self.plans)

    def to_json(self) -> str:
        return json.dumps({
            "format": FORMAT, "kind": KIND, "version": __version__, "fingerprint": self.fingerprint,
            "steps": self.steps, "settings": self.settings, "completed": self.completed,
            "weights": self.weights, "plans": [p.to_dict() for p in self.plans],
        }, indent=1)


def _atomic_write(path: Path, write: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save(directory: str | os.PathLike[str], model: nn.Module, ckpt: Checkpoint) -> Path:
    """Write the weights, then the index that names them, then drop older weights. Call on rank 0 only."""
    from safetensors.torch import save_model

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    _atomic_write(d / ckpt.weights, lambda p: save_model(model, str(p)))
    _atomic_write(d / INDEX, lambda p: p.write_text(ckpt.to_json()))
    for old in d.glob("step_*.safetensors"):
        if old.name != ckpt.weights:
            old.unlink()
    return d / INDEX


def read(directory: str | os.PathLike[str]) -> Checkpoint | None:
    """The checkpoint in ``directory``, or None when there is none yet."""
    path = Path(directory) / INDEX
    if not path.exists():
        return None
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise FileFormatError(f"{path} is not a readable secateurs checkpoint: {exc}") from exc
    if not isinstance(d, dict) or d.get("kind") != KIND or d.get("format") != FORMAT:
        raise FileFormatError(f"{path} is not a secateurs iterative-pruning checkpoint of format {FORMAT}")
    try:
        ckpt = Checkpoint(str(d["fingerprint"]), list(d["steps"]), dict(d["settings"]),
                          [Plan.from_dict(p) for p in d["plans"]], str(d["weights"]))
    except (KeyError, TypeError) as exc:
        raise FileFormatError(f"{path} is missing fields: {exc}") from exc
    if not (Path(directory) / ckpt.weights).exists():
        raise FileFormatError(f"{path} names weights {ckpt.weights!r}, which are missing from {directory}")
    return ckpt


def restore_(model: nn.Module, directory: str | os.PathLike[str], ckpt: Checkpoint) -> nn.Module:
    """Replay the checkpoint's plans on ``model`` (a fresh copy of the original) and load its weights."""
    from safetensors.torch import load_model

    from secateurs.surgery.apply import apply_plan

    for plan in ckpt.plans:
        apply_plan(model, plan)
    missing, unexpected = load_model(model, str(Path(directory) / ckpt.weights), strict=False)
    if missing or unexpected:
        raise FileFormatError(
            f"weights in {directory} do not match the replayed model (missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]})")
    return model


def load(model: nn.Module, directory: str | os.PathLike[str]) -> nn.Module:
    """Rebuild the pruned model of a checkpoint from a fresh copy of the original ``model``, in place."""
    from secateurs.graph.analysis import fingerprint

    ckpt = read(directory)
    if ckpt is None:
        raise FileFormatError(f"no checkpoint ({INDEX}) in {directory}")
    if fingerprint(model) != ckpt.fingerprint:
        raise FileFormatError(
            f"the checkpoint in {directory} was made from another architecture (fingerprint {ckpt.fingerprint}, "
            f"this model {fingerprint(model)}); pass a fresh, unpruned copy of the original model")
    return restore_(model, directory, ckpt)
