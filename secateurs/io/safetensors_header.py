"""Recognise a safetensors file by its header, before any reader touches it.

A safetensors file is an 8-byte little-endian header length ``n``, ``n`` bytes of JSON (``__metadata__``
plus one entry per tensor: ``dtype``, ``shape``, ``data_offsets``) and the tensor bytes, whose offsets
tile the rest of the file exactly. A first byte of ``0x80`` is a legitimate header length (128 + 256k),
so files are never judged by their first byte; a file that fails the check is described, and only then
compared with the pickle / ``torch.save`` magic to say what it looks like.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from secateurs.errors import FileFormatError

_MAX_HEADER = 100 << 20  # the safetensors library's own limit on the header size
_ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "I16": 2, "U16": 2,
             "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8, "C64": 8}
_PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")  # pickle protocol >= 2, torch.save zip archive


def _bad(path: Path, head: bytes, why: str) -> FileFormatError:
    hint = ""
    if head.startswith(_PICKLE_MAGIC):
        hint = ("; it looks like a pickle / torch.save file, which secateurs never unpickles (it could run "
                "arbitrary code)")
    return FileFormatError(f"{path} is not a valid safetensors file ({why}){hint}. Re-save the model with "
                           "secateurs.save")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_safetensors(path: str | Path) -> dict[str, Any]:
    """Validate the header of the safetensors file at ``path`` against its size; returns the parsed header."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if not 2 <= n <= min(size - 8, _MAX_HEADER):
                raise _bad(path, head, "too short" if n < 0 else f"header length {n} does not fit a {size}-byte file")
            raw = f.read(n)
    except OSError as exc:
        raise FileFormatError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _bad(path, head, "the header is not JSON") from None
    if not isinstance(header, dict):
        raise _bad(path, head, "the header is not a JSON object")
    _check_entries(path, head, header, size - 8 - n)
    return header


def _check_entries(path: Path, head: bytes, header: dict[str, Any], data_size: int) -> None:
    spans = []
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise _bad(path, head, "__metadata__ is not a mapping of strings")
            continue
        if not isinstance(entry, dict) or entry.get("dtype") not in _ITEMSIZE:
            raise _bad(path, head, f"tensor {name!r} has no known dtype")
        shape, offsets = entry.get("shape"), entry.get("data_offsets")
        if not isinstance(shape, list) or not all(_is_int(s) for s in shape):
            raise _bad(path, head, f"tensor {name!r} has shape {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)
                and offsets[0] <= offsets[1]):
            raise _bad(path, head, f"tensor {name!r} has data offsets {offsets!r}")
        if offsets[1] - offsets[0] != math.prod(shape) * _ITEMSIZE[entry["dtype"]]:
            raise _bad(path, head, f"tensor {name!r}: {offsets[1] - offsets[0]} bytes for shape {shape} {entry['dtype']}")
        spans.append(tuple(offsets))
    end = 0
    for begin, stop in sorted(spans):
        if begin != end:
            raise _bad(path, head, "tensor data overlaps or leaves gaps")
        end = stop
    if end != data_size:
        raise _bad(path, head, f"the tensors take {end} bytes but the file holds {data_size} after the header")
