"""``manifest.json`` of a saved directory: read with every field type-checked, files checked against it.

The manifest lists a SHA-256 for every file ``save`` wrote (``files``) and, when the unpruned model is a
``file:`` source (a ``.pt2`` program or another saved directory), the SHA-256 of that source
(``model_source``). Files are read only from inside the directory: names are plain file names, and
symbolic links are refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from secateurs._version import __version__
from secateurs.errors import FileFormatError, InvalidTypeError

MANIFEST_FORMAT = 1
WEIGHTS = "model.safetensors"
PLAN = "plan.json"
MANIFEST = "manifest.json"
SAFETENSORS_FILES = (WEIGHTS, "sparsity.safetensors", "model.int8.safetensors")
_MAX_JSON = 256 << 20
_HEX64 = re.compile(r"[0-9a-f]{64}")
# field -> the types it may hold (absent fields are allowed: older manifests lack the newer ones)
_FIELDS: dict[str, tuple[type, ...]] = {
    "library_version": (str,), "torch_version": (str,), "model_spec": (str, type(None)), "model_class": (str,),
    "input": (dict, type(None)), "training": (bool,), "fingerprint_unpruned": (str,), "fingerprint_pruned": (str,),
    "architecture_pruned": (str,), "aliases": (dict,), "files": (dict,), "dtypes": (dict,),
    "sparsity": (dict, type(None)), "int8": (dict, type(None)), "model_source": (dict, type(None)),
}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def plain_name(name: Any) -> bool:
    """A file name inside the directory: no separators, no ``..``, not hidden."""
    return isinstance(name, str) and bool(name) and "/" not in name and "\\" not in name and not name.startswith(".") \
        and "\0" not in name


def as_path(value: Any, what: str) -> Path:
    """``value`` as a Path; ``InvalidTypeError`` naming ``what`` for anything but a string or path."""
    if not isinstance(value, (str, os.PathLike)):
        raise InvalidTypeError(f"{what} must be a path (str or os.PathLike), got {type(value).__name__}")
    return Path(value)


def regular_file(path: Path, what: str = "") -> Path:
    """``path`` itself (not a link) must be a regular file."""
    if path.is_symlink():
        raise FileFormatError(f"{path} is a symbolic link; secateurs reads only regular files inside the saved "
                              "directory (copy the file in instead of linking it)")
    if not path.is_file():
        raise FileFormatError(f"{path} is missing{what}; the saved directory is incomplete")
    return path


def read_json(path: Path, what: str) -> Any:
    regular_file(path)
    if path.stat().st_size > _MAX_JSON:
        raise FileFormatError(f"{path} is larger than {_MAX_JSON >> 20} MiB: not a {what}")
    try:
        return json.loads(path.read_text("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise FileFormatError(f"{path} is not valid JSON ({type(exc).__name__}: {str(exc)[:100]}); the file is "
                              "corrupt or was edited") from None


def read_manifest(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of a saved directory, every field checked for its type; ``FileFormatError`` otherwise."""
    root = as_path(directory, "the saved directory")
    if not root.is_dir():
        raise FileFormatError(f"{str(root)!r} is not a directory saved by secateurs.save")
    path = root / MANIFEST
    if not os.path.lexists(path):
        raise FileFormatError(f"{str(root)!r} has no {MANIFEST}: not a directory saved by secateurs.save")
    manifest = read_json(path, "secateurs manifest")
    if not isinstance(manifest, dict) or manifest.get("format") != "secateurs":
        raise FileFormatError(f"{path} is not a secateurs manifest")
    if manifest.get("format_version") != MANIFEST_FORMAT:
        raise FileFormatError(f"{path} has format version {manifest.get('format_version')!r}; this secateurs "
                              f"({__version__}) reads version {MANIFEST_FORMAT}")
    for key, types in _FIELDS.items():
        if key in manifest and not isinstance(manifest[key], types):
            raise FileFormatError(f"{path}: field {key!r} is a {type(manifest[key]).__name__}, expected "
                                  f"{' or '.join(t.__name__ for t in types)}; the file is corrupt or was edited")
    manifest.setdefault("model_spec", None)
    _check_maps(path, manifest)
    return manifest


def _check_maps(path: Path, manifest: dict[str, Any]) -> None:
    for name, digest in (manifest.get("files") or {}).items():
        if not plain_name(name):
            raise FileFormatError(f"{path} lists the file {name!r}, which is not a plain file name inside the directory")
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            raise FileFormatError(f"{path}: the checksum of {name!r} is not a SHA-256 hex digest")
    for key in ("aliases", "dtypes"):
        entries = manifest.get(key) or {}
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in entries.items()):
            raise FileFormatError(f"{path}: {key!r} must map tensor names to strings")
    for key in ("int8", "sparsity"):
        entry = manifest.get(key)
        if entry and key == "int8" and entry.get("mode") not in ("dynamic", "static"):
            raise FileFormatError(f"{path}: int8 mode {entry.get('mode')!r} is neither 'dynamic' nor 'static'")
    if manifest.get("input") is not None:
        from secateurs.errors import InvalidArgumentError
        from secateurs.io.inputs import InputSpec

        try:
            InputSpec.from_dict(manifest["input"])
        except InvalidArgumentError as exc:
            raise FileFormatError(f"{path}: field 'input': {exc}") from None
    source = manifest.get("model_source")
    if source is not None and not (isinstance(source.get("path"), str) and isinstance(source.get("sha256"), str)
                                   and _HEX64.fullmatch(source["sha256"])):
        raise FileFormatError(f"{path}: 'model_source' must hold the source's path and SHA-256")


def check_file(root: Path, name: str, manifest: dict[str, Any]) -> Path:
    """``root/name``: a regular file (no link), a valid safetensors header where one is expected, and the
    SHA-256 the manifest records."""
    from secateurs.io.safetensors_header import check_safetensors

    path = regular_file(root / name)
    digest = (manifest.get("files") or {}).get(name)
    if digest is None:
        raise FileFormatError(f"{root / MANIFEST} has no checksum for {name}")
    if sha256_file(path) != digest:
        raise FileFormatError(f"{path} does not match the checksum in {MANIFEST}: the file is truncated, corrupt or "
                              "was edited after saving")
    if name in SAFETENSORS_FILES:
        check_safetensors(path)
    return path


def source_record(spec: str | None) -> dict[str, str] | None:
    """``{"path", "sha256"}`` of the ``file:`` source a spec names (a ``.pt2``, or a saved directory's manifest)."""

    path = file_source(spec) if spec else None
    if path is None:
        return None
    target = path / MANIFEST if path.is_dir() else path
    if not target.is_file():
        return None
    return {"path": str(path), "sha256": sha256_file(target)}


def check_source(root: Path, manifest: dict[str, Any]) -> None:
    """The ``file:`` source the manifest's spec names must be the one it was saved from (same path and SHA-256)."""

    spec = manifest.get("model_spec")
    path = file_source(spec) if spec else None
    record = manifest.get("model_source")
    if path is None or not record:
        return  # not a file: source, or a manifest written before sources were recorded
    target = path / MANIFEST if path.is_dir() else path
    if Path(record["path"]) != path or not target.is_file() or sha256_file(target) != record["sha256"]:
        raise FileFormatError(f"{root / MANIFEST} names the source {path}, which is missing or changed since this "
                              "directory was saved (its SHA-256 differs from the recorded one); rebuild it from the "
                              "original source, or pass model_factory= / model= to load()")


def architecture(state: Mapping[str, Any]) -> str:
    """Hash of tensor names and shapes (not dtypes): the pruned architecture, whatever precision it was saved in."""
    import hashlib

    h = hashlib.sha256()
    for name in sorted(state):
        h.update(f"{name}:{tuple(state[name].shape)};".encode())
    return h.hexdigest()[:16]


def file_source(spec: str) -> Path | None:
    """The path a ``file:`` spec (or a bare saved-directory path) names, absolute; None for other specs."""
    if not isinstance(spec, str):
        return None
    if spec.startswith("file:") and spec[5:]:
        return Path(spec[5:]).expanduser().absolute()
    if ":" not in spec and os.path.isfile(os.path.join(spec, "manifest.json")):
        return Path(spec).expanduser().absolute()
    return None
