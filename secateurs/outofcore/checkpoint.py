"""A Hugging Face checkpoint directory read lazily: tensor names, shapes and dtypes from the safetensors headers,
values only when asked, a few at a time.

``read(names)`` reads each tensor's bytes with positioned reads straight into a new tensor's memory: nothing is
mapped, so the process holds exactly the tensors asked for (a memory map would also keep every page it touched
resident until it is closed, doubling a large tensor for a while). Only safetensors are read
(``pytorch_model.bin`` is a pickle: refused).
"""

from __future__ import annotations

import json
import struct
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from secateurs.errors import FileFormatError, InvalidArgumentError

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"

_DTYPES = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32, "F64": torch.float64,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2}


@dataclass(frozen=True)
class TensorInfo:
    file: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    start: int  # byte offset of the values in the file
    end: int

    @property
    def nbytes(self) -> int:
        return int(torch.Size(self.shape).numel()) * torch.empty(0, dtype=self.dtype).element_size()


class Checkpoint:
    """The config and tensors of a local Hugging Face model directory (safetensors, sharded or not)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().absolute()
        if not (self.root / "config.json").is_file():
            raise InvalidArgumentError(f"{self.root} is not a Hugging Face model directory (no config.json)")
        self.tensors: dict[str, TensorInfo] = {}
        for file in self._files():
            for name, info in _header(self.root / file).items():
                if name in self.tensors:
                    raise FileFormatError(f"{name!r} is stored twice ({self.tensors[name].file} and {file})")
                self.tensors[name] = info

    def _files(self) -> list[str]:
        index = self.root / INDEX
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise FileFormatError(f"{index} is not a safetensors index (no weight_map): {exc}") from exc
            return sorted(set(weight_map.values()))
        if (self.root / SINGLE).is_file():
            return [SINGLE]
        found = sorted(p.name for p in self.root.glob("*.safetensors"))
        if found:
            return found
        pickled = sorted(p.name for p in self.root.glob("*.bin"))
        hint = f" (found {', '.join(pickled)}: pickles, which secateurs does not load)" if pickled else ""
        raise InvalidArgumentError(f"{self.root} has no safetensors weights{hint}; convert it to safetensors first")

    @property
    def total_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors.values())

    def config_dict(self) -> dict[str, Any]:
        return dict(json.loads((self.root / "config.json").read_text()))

    def read(self, names: Iterable[str]) -> dict[str, torch.Tensor]:
        """The named tensors, each read into memory of its own."""
        out: dict[str, torch.Tensor] = {}
        handles: dict[str, Any] = {}
        try:
            for name in names:
                info = self.tensors.get(name)
                if info is None:
                    raise InvalidArgumentError(f"the checkpoint {self.root} has no tensor {name!r}")
                f = handles.get(info.file)
                if f is None:
                    f = handles[info.file] = open(self.root / info.file, "rb")  # noqa: SIM115  # closed below
                out[name] = _read(f, info, name)
        finally:
            for f in handles.values():
                f.close()
        return out


def _read(f: Any, info: TensorInfo, name: str) -> torch.Tensor:
    buf = torch.empty(info.end - info.start, dtype=torch.uint8)
    if len(buf):
        f.seek(info.start)
        got = f.readinto(memoryview(buf.numpy()))  # type: ignore[arg-type]
        if got != len(buf):
            raise FileFormatError(f"{f.name}: tensor {name!r} is truncated ({got} of {len(buf)} bytes)")
    return buf.view(info.dtype).reshape(info.shape)


def _header(path: Path) -> dict[str, TensorInfo]:
    """Names, dtypes and shapes of one safetensors file, from its JSON header alone."""
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > 100 * 2**20:
                raise FileFormatError(f"{path} declares a {n}-byte header; not a safetensors file")
            header = json.loads(f.read(n))
    except (OSError, struct.error, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FileFormatError(f"{path} is not a readable safetensors file: {exc}") from exc
    if sys.byteorder != "little":
        raise FileFormatError("safetensors files are little-endian; reading them on this machine is not supported")
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(str(entry.get("dtype")))
        if dtype is None:
            raise FileFormatError(f"{path}: tensor {name!r} has dtype {entry.get('dtype')!r}, which secateurs "
                                  f"does not read (known: {', '.join(_DTYPES)})")
        begin, end = (int(v) for v in entry["data_offsets"])
        info = TensorInfo(path.name, dtype, tuple(int(s) for s in entry["shape"]), 8 + n + begin, 8 + n + end)
        if info.end - info.start != info.nbytes:
            raise FileFormatError(f"{path}: tensor {name!r} spans {info.end - info.start} bytes, its shape and dtype "
                                  f"need {info.nbytes}")
        out[name] = info
    return out
