"""Doctored files for testing loaders: pickles that leave a marker file when unpickled, hostile ``.pt2`` archives.

Every payload here only creates an empty file at a path the test chooses, so a test asserts "nothing ran"
by checking that the marker is absent. Plugin authors can reuse these against their own load paths.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


class Marker:
    """Unpickling this object creates an empty file at ``path`` (``open(path, "w")``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def pickle_bytes(marker: str | Path, protocol: int = 2) -> bytes:
    """A pickle whose loading creates ``marker``."""
    return pickle.dumps(Marker(marker), protocol=protocol)


def torch_save_bytes(marker: str | Path) -> bytes:
    """A ``torch.save`` zip whose full (``weights_only=False``) load creates ``marker``."""
    buffer = io.BytesIO()
    torch.save({"x": Marker(marker)}, buffer)
    return buffer.getvalue()


def _small_program(dynamic: bool = False) -> Any:
    model = torch.nn.Linear(4, 3).eval()
    shapes = ({0: torch.export.Dim("batch", min=2, max=64)},) if dynamic else None
    return torch.export.export(model, (torch.randn(2, 4),), dynamic_shapes=shapes, strict=False)


def program_bytes(dynamic: bool = False) -> bytes:
    """A valid ``.pt2`` of a tiny Linear (a dynamic batch dim records symbolic expressions)."""
    buffer = io.BytesIO()
    torch.export.save(_small_program(dynamic), buffer)
    return buffer.getvalue()


def rewrite_zip(data: bytes, edit: Callable[[str, bytes], bytes | None],
                add: dict[str, bytes] | None = None, compression: int = zipfile.ZIP_STORED) -> bytes:
    """``data`` (a zip) with ``edit(name, content)`` applied to each member (None drops it) and ``add`` appended."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as zin, zipfile.ZipFile(out, "w", compression) as zout:
        root = zin.namelist()[0].split("/", 1)[0]
        for info in zin.infolist():
            content = edit(info.filename, zin.read(info.filename))
            if content is not None:
                zout.writestr(info.filename, content, compress_type=compression)
        for name, content in (add or {}).items():
            zout.writestr(name.replace("{root}", root), content, compress_type=compression)
    return out.getvalue()


def legacy_layout_pt2(marker: str | Path) -> bytes:
    """The pre-2.7 zip layout ``torch.export.load`` falls back to, with a pickle as the state dict, plus a dummy
    ``x/archive_format`` and ``x/models/model.json`` that make it look like a current archive at a glance."""
    from torch._export.serde.schema import SCHEMA_VERSION
    from torch._export.serde.serialize import serialize

    artifact = serialize(_small_program())
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("x/archive_format", "pt2")
        z.writestr("x/models/model.json", "{}")
        z.writestr("version", ".".join(map(str, SCHEMA_VERSION)))
        z.writestr("serialized_exported_program.json", artifact.exported_program)
        z.writestr("serialized_state_dict.json", pickle_bytes(marker))
        z.writestr("serialized_constants.json", artifact.constants)
        z.writestr("serialized_example_inputs.pt", artifact.example_inputs)
    return out.getvalue()


def expression_pt2(marker: str | Path) -> bytes:
    """A current-layout archive whose symbolic size expression is Python that creates ``marker``
    (``sympy.sympify`` evaluates it)."""
    import re

    code = f"__import__('pathlib').Path('{marker}').touch()"

    def edit(name: str, content: bytes) -> bytes:
        if name.endswith("models/model.json"):
            return re.sub(rb'"expr_str": "[^"]*"', f'"expr_str": "{code}"'.encode(), content)
        return content

    return rewrite_zip(program_bytes(dynamic=True), edit)


def target_pt2(target: str) -> bytes:
    """A current-layout archive whose ``linear`` node calls ``target`` instead (e.g. ``torch.os.system``)."""
    def edit(name: str, content: bytes) -> bytes:
        if name.endswith("models/model.json"):
            return content.replace(b'"torch.ops.aten.linear.default"', f'"{target}"'.encode())
        return content

    return rewrite_zip(program_bytes(), edit)
