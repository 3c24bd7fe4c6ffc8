"""The pruned checkpoint's files: one safetensors shard per part, the index, the rewritten config, and the
tokenizer and generation files copied beside them, all inside the temporary directory of an atomic write."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from secateurs.io.atomic import write_text
from secateurs.outofcore.checkpoint import INDEX, SINGLE

#: files of a model directory that the pruned checkpoint replaces rather than copies
_REPLACED = {"config.json", INDEX, SINGLE}
_WEIGHTS = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".msgpack", ".h5", ".gguf")


class ShardWriter:
    """Writes shard ``i`` of ``total`` as ``model-0000i-of-0000N.safetensors`` and keeps the weight map."""

    def __init__(self, directory: Path, total: int) -> None:
        self.directory, self.total = directory, total
        self.weight_map: dict[str, str] = {}
        self.written = 0
        self.bytes = 0

    def write(self, tensors: dict[str, torch.Tensor]) -> None:
        from safetensors.torch import save_file

        if not tensors:
            return
        self.written += 1
        name = f"model-{self.written:05d}-of-{self.total:05d}.safetensors"
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(self.directory / name), metadata={"format": "pt"})
        self.weight_map.update(dict.fromkeys(tensors, name))
        self.bytes += sum(t.numel() * t.element_size() for t in tensors.values())

    def finish(self) -> None:
        """The index; shards are renamed when fewer were written than announced (parts without tensors)."""
        if self.written != self.total:
            renames = {}
            for i in range(1, self.written + 1):
                old = f"model-{i:05d}-of-{self.total:05d}.safetensors"
                new = f"model-{i:05d}-of-{self.written:05d}.safetensors"
                (self.directory / old).rename(self.directory / new)
                renames[old] = new
            self.weight_map = {k: renames[v] for k, v in self.weight_map.items()}
        index = {"metadata": {"total_size": self.bytes}, "weight_map": dict(sorted(self.weight_map.items()))}
        write_text(self.directory / INDEX, json.dumps(index, indent=2))


def copy_side_files(source: Path, directory: Path) -> list[str]:
    """Copy the tokenizer, generation config and other plain files of ``source`` (not weights, not the config)."""
    copied = []
    for p in sorted(source.iterdir()):
        if not p.is_file() or p.name in _REPLACED or p.name.endswith(_WEIGHTS) or p.name.endswith(".index.json"):
            continue
        shutil.copy2(p, directory / p.name)
        copied.append(p.name)
    return copied
