"""save()/load(): safetensors weights + plan.json + manifest.json, written atomically, never pickle.

A saved directory holds the *pruned* weights and the plan that turns a fresh unpruned model into the
pruned architecture. Loading (``io/loading.py``) rebuilds the unpruned model (from a factory, a fresh
instance, or the model spec recorded in the manifest), checks its architecture, applies the plan and
assigns the weights, all or nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from secateurs._version import __version__
from secateurs.errors import InvalidArgumentError, InvalidTypeError, PlanError
from secateurs.io.atomic import atomic_dir, write_bytes, write_text
from secateurs.io.inputs import InputSpec
from secateurs.io.int8 import INT8_WEIGHTS, int8_tensors
from secateurs.io.manifest import (
    MANIFEST,
    MANIFEST_FORMAT,
    PLAN,
    WEIGHTS,
    architecture,
    as_path,
    plain_name,
    read_manifest,
    sha256_file,
    source_record,
)
from secateurs.io.masks import MASKS, write_masks
from secateurs.plans import Plan

_sha256 = sha256_file  # the name tests and older callers use


def _unique_tensors(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """State dict without aliases (tied weights stored once) and the alias -> stored-name map."""
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    first: dict[int, str] = {}
    ptrs: set[int] = set()
    for name, t in model.state_dict(keep_vars=True).items():
        if id(t) in first:
            aliases[name] = first[id(t)]
            continue
        first[id(t)] = name
        if t.is_meta:
            raise InvalidArgumentError(f"cannot save {name!r}: the model is on the meta device (no weights to save)")
        out = t.detach().cpu().contiguous()
        if out.numel() and out.data_ptr() in ptrs:  # a view sharing storage: safetensors wants distinct buffers
            out = out.clone()
        if out.numel():
            ptrs.add(out.data_ptr())
        tensors[name] = out
    return tensors, aliases


def save(
    model: nn.Module,
    plan: Plan,
    directory: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    model_spec: str | None = None,
    input_spec: InputSpec | None = None,
    unpruned_fingerprint: str | None = None,
    extra_files: Mapping[str, str | bytes] | None = None,
    sparsity: Any = None,
    int8: nn.Module | None = None,
) -> Path:
    """Save a pruned ``model`` and its ``plan`` to ``directory`` atomically; returns the directory path.

    ``model_spec`` (e.g. ``"torchvision:resnet18"``) lets :func:`load` rebuild the unpruned model by itself.
    ``extra_files`` (name -> text or bytes) are written into the same atomic directory, e.g. reports.
    ``int8``: the int8 model, written to ``model.int8.safetensors``: dynamic
    (``secateurs.quantization.dynamic.quantize_dynamic_int8``) or static PT2E (``quantize_static_int8``, or
    ``sc.convert_int8`` after post-training calibration or ``recover(..., qat="int8")``; needs ``input_spec``);
    ``load(directory, int8=True)`` rebuilds it.
    ``sparsity``: the ``SparsityResult`` of ``sparsify_2to4``; its masks go to ``sparsity.safetensors`` and
    :func:`load` re-applies them.
    """
    from safetensors.torch import save_file

    from secateurs.graph.analysis import fingerprint

    if not isinstance(model, nn.Module):
        raise InvalidTypeError(f"save() needs an nn.Module, got {type(model).__name__}")
    if not isinstance(plan, Plan):
        raise InvalidTypeError(f"save() needs a secateurs Plan, got {type(plan).__name__}")
    _check_save_args(directory, model_spec, input_spec, extra_files)
    from secateurs.io.specs import check_not_source

    pruned_fp = fingerprint(model)
    expected = plan.shapes_after()
    state = model.state_dict(keep_vars=True)
    for name, shape in expected.items():
        if name in state and list(state[name].shape) != list(shape):
            raise PlanError(f"model does not match the plan: {name!r} has shape {list(state[name].shape)}, the pruned "
                            f"plan expects {shape}; save the model the plan was applied to")
    tensors, aliases = _unique_tensors(model)
    for name in extra_files or {}:
        if not isinstance(name, str) or name in (WEIGHTS, PLAN, MANIFEST, MASKS, INT8_WEIGHTS) or not plain_name(name):
            raise InvalidArgumentError(f"extra file name {name!r} is reserved or not a plain file name")
    check_not_source(directory, model_spec)  # replacing the source would leave the saved model without one
    source = source_record(model_spec)
    with atomic_dir(directory, overwrite) as tmp:
        save_file(tensors, str(tmp / WEIGHTS), metadata={"format": "secateurs", "version": __version__})
        write_text(tmp / PLAN, plan.to_json(indent=1))
        manifest: dict[str, Any] = {
            "format": "secateurs", "format_version": MANIFEST_FORMAT,
            "library_version": __version__, "torch_version": torch.__version__,
            "model_spec": model_spec, "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
            "input": input_spec.to_dict() if input_spec is not None else None,
            "training": model.training,
            "fingerprint_unpruned": unpruned_fingerprint or plan.fingerprint,
            "fingerprint_pruned": pruned_fp,
            "architecture_pruned": architecture(state),
            "dtypes": {name: str(t.dtype).removeprefix("torch.") for name, t in tensors.items()},
            "aliases": aliases,
            "model_source": source,
            "files": {WEIGHTS: _sha256(tmp / WEIGHTS), PLAN: _sha256(tmp / PLAN)},
        }
        if sparsity is not None:
            manifest["sparsity"] = write_masks(tmp / MASKS, sparsity)
            manifest["files"][MASKS] = _sha256(tmp / MASKS)
        if int8 is not None:
            manifest["int8"] = write_int8(tmp, int8, input_spec)
            manifest["files"][INT8_WEIGHTS] = _sha256(tmp / INT8_WEIGHTS)
        for name, data in (extra_files or {}).items():
            write_bytes(tmp / name, data.encode("utf-8") if isinstance(data, str) else data)
            manifest["files"][name] = _sha256(tmp / name)
        write_text(tmp / MANIFEST, json.dumps(manifest, indent=1))
    return Path(directory)


def _check_save_args(directory: Any, model_spec: Any, input_spec: Any, extra_files: Any) -> None:
    as_path(directory, "save()'s directory")
    if model_spec is not None and not isinstance(model_spec, str):
        raise InvalidTypeError(f"save()'s model_spec must be a spec string like 'torchvision:resnet18', got "
                               f"{type(model_spec).__name__}")
    if input_spec is not None and not isinstance(input_spec, InputSpec):
        raise InvalidTypeError(f"save()'s input_spec must be an InputSpec, got {type(input_spec).__name__}")
    if extra_files is not None and (not isinstance(extra_files, Mapping) or not all(
            isinstance(v, (str, bytes)) for v in extra_files.values())):
        raise InvalidTypeError("save()'s extra_files must map file names to text or bytes")


def write_int8(directory: Path, qmodel: nn.Module, input_spec: InputSpec | None) -> dict[str, Any]:
    """Write ``model.int8.safetensors`` into ``directory``; returns the manifest's ``int8`` entry.

    Dynamic models store int8 Linear weights (``io/int8.py``); static (PT2E) models store their converted graph's
    tensors and quantization numbers plus its output on the recorded example input (``io/int8_static.py``), which
    needs ``input_spec``."""
    from safetensors.torch import save_file

    static = (getattr(qmodel, "meta", None) or {}).get("secateurs_int8")
    if not static:
        tensors = int8_tensors(qmodel)
        save_file(tensors, str(directory / INT8_WEIGHTS), metadata={"format": "secateurs-int8-dynamic", "version": __version__})
        return {"mode": "dynamic", "file": INT8_WEIGHTS, "linear_layers": sum(k.endswith(".weight.int8") for k in tensors)}
    if input_spec is None:
        raise InvalidArgumentError("saving a statically quantized int8 model needs input_spec= (its rebuild captures "
                                   "and quantizes the pruned model on the example input)")
    from secateurs.io.int8_static import encode

    tensors, meta = encode(qmodel, input_spec.make())
    save_file(tensors, str(directory / INT8_WEIGHTS),
              metadata={"format": "secateurs-int8-static", "version": __version__, **meta})
    return {"mode": "static", "backend": static["backend"], "flow": static.get("flow", "ptq"), "file": INT8_WEIGHTS}


def add_int8(directory: str | os.PathLike[str], qmodel: nn.Module) -> dict[str, Any]:
    """Add ``model.int8.safetensors`` to a saved directory (``secateurs export --int8``): the file and the updated
    manifest are each written to a temp file and renamed, so a failure leaves the directory as it was."""
    from secateurs.io.atomic import marked_temp, recover_stale

    root = Path(directory)
    manifest = read_manifest(root)
    spec = InputSpec.from_dict(manifest["input"]) if manifest.get("input") else None
    recover_stale(root)
    staging = marked_temp(root / INT8_WEIGHTS, directory=True)
    try:
        entry = write_int8(staging, qmodel, spec)
        manifest["int8"] = entry
        manifest.setdefault("files", {})[INT8_WEIGHTS] = _sha256(staging / INT8_WEIGHTS)
        write_text(staging / MANIFEST, json.dumps(manifest, indent=1))
        os.replace(staging / INT8_WEIGHTS, root / INT8_WEIGHTS)
        os.replace(staging / MANIFEST, root / MANIFEST)  # last: until here the old manifest ignores the new file
    finally:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
    return entry


def record_files(directory: str | os.PathLike[str], names: list[str]) -> None:
    """Update the manifest's checksums of ``names`` (files ``secateurs export``/``report`` rewrote or added in a
    saved directory); the manifest is replaced atomically. A directory without a manifest is left alone."""
    from secateurs.io.atomic import replace_file

    root = Path(directory)
    if not (root / MANIFEST).is_file():
        return
    manifest = read_manifest(root)
    files = manifest.setdefault("files", {})
    for name in names:
        if plain_name(name) and (root / name).is_file() and not (root / name).is_symlink():
            files[name] = _sha256(root / name)
    replace_file(root / MANIFEST, json.dumps(manifest, indent=1).encode("utf-8"))


from secateurs.io.loading import load, read_masks, read_plan, unpruned_factory  # noqa: E402  (re-exported)

__all__ = ["MANIFEST", "MANIFEST_FORMAT", "PLAN", "WEIGHTS", "add_int8", "architecture", "load", "read_manifest",
           "read_masks", "read_plan", "record_files", "save", "unpruned_factory", "write_int8"]
