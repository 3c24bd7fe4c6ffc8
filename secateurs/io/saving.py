"""save()/load(): safetensors weights + plan.json + manifest.json, written atomically, never pickle.

A saved directory holds the *pruned* weights and the plan that turns a fresh unpruned model into the
pruned architecture. Loading rebuilds the unpruned model (from a factory, a fresh instance, or the
model spec recorded in the manifest), checks its fingerprint, applies the plan and loads the weights.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from secateurs._version import __version__
from secateurs.errors import FileFormatError, InvalidArgumentError, InvalidTypeError, PlanError
from secateurs.io.atomic import atomic_dir, write_bytes, write_text
from secateurs.io.inputs import InputSpec
from secateurs.io.int8 import INT8_WEIGHTS, int8_tensors
from secateurs.io.masks import MASKS, read_masks_file, write_masks
from secateurs.plans import Plan

MANIFEST_FORMAT = 1
WEIGHTS = "model.safetensors"
PLAN = "plan.json"
MANIFEST = "manifest.json"
_PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")  # pickle protocol >= 2, torch.save zip archive


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
    ``int8``: the dynamically quantized model (``secateurs.quantization.dynamic.quantize_dynamic_int8``), written to
    ``model.int8.safetensors``; ``load(directory, int8=True)`` rebuilds it.
    ``sparsity``: the ``SparsityResult`` of ``sparsify_2to4``; its masks go to ``sparsity.safetensors`` and
    :func:`load` re-applies them.
    """
    from safetensors.torch import save_file

    from secateurs.graph.analysis import fingerprint

    if not isinstance(model, nn.Module):
        raise InvalidTypeError(f"save() needs an nn.Module, got {type(model).__name__}")
    if not isinstance(plan, Plan):
        raise InvalidTypeError(f"save() needs a secateurs Plan, got {type(plan).__name__}")
    pruned_fp = fingerprint(model)
    expected = plan.shapes_after()
    state = model.state_dict(keep_vars=True)
    for name, shape in expected.items():
        if name in state and list(state[name].shape) != list(shape):
            raise PlanError(f"model does not match the plan: {name!r} has shape {list(state[name].shape)}, the pruned "
                            f"plan expects {shape}; save the model the plan was applied to")
    tensors, aliases = _unique_tensors(model)
    for name in extra_files or {}:
        if name in (WEIGHTS, PLAN, MANIFEST, MASKS, INT8_WEIGHTS) or "/" in name or name.startswith("."):
            raise InvalidArgumentError(f"extra file name {name!r} is reserved or not a plain file name")
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
            "aliases": aliases,
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
        write_text(tmp / MANIFEST, json.dumps(manifest, indent=1))
    return Path(directory)


def write_int8(directory: Path, qmodel: nn.Module, input_spec: InputSpec | None) -> dict[str, Any]:
    """Write ``model.int8.safetensors`` into ``directory``; returns the manifest's ``int8`` entry.

    Dynamic models store int8 Linear weights (``io/int8.py``); static FX models store their whole quantized
    state plus their output on the recorded example input (``io/int8_static.py``), which needs ``input_spec``."""
    from safetensors.torch import save_file

    static = (getattr(qmodel, "meta", None) or {}).get("secateurs_int8")
    if not static:
        tensors = int8_tensors(qmodel)
        save_file(tensors, str(directory / INT8_WEIGHTS), metadata={"format": "secateurs-int8-dynamic", "version": __version__})
        return {"mode": "dynamic", "file": INT8_WEIGHTS, "linear_layers": sum(k.endswith(".weight.int8") for k in tensors)}
    if input_spec is None:
        raise InvalidArgumentError("saving a statically quantized int8 model needs input_spec= (its rebuild runs FX "
                                   "quantization on the example input)")
    from secateurs.io.int8_static import encode

    tensors, meta = encode(qmodel, input_spec.make())
    save_file(tensors, str(directory / INT8_WEIGHTS),
              metadata={"format": "secateurs-int8-static", "version": __version__, **meta})
    return {"mode": "static", "backend": static["backend"], "file": INT8_WEIGHTS}


def add_int8(directory: str | os.PathLike[str], qmodel: nn.Module) -> dict[str, Any]:
    """Add ``model.int8.safetensors`` to a saved directory (``secateurs export --int8``): the file and the updated
    manifest are each written to a temp file and renamed, so a failure leaves the directory as it was."""
    import tempfile

    root = Path(directory)
    manifest = read_manifest(root)
    spec = InputSpec.from_dict(manifest["input"]) if manifest.get("input") else None
    staging = Path(tempfile.mkdtemp(prefix=".int8-", dir=root))
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


def read_manifest(directory: str | os.PathLike[str]) -> dict[str, Any]:
    root = Path(directory)
    path = root / MANIFEST
    if not root.is_dir():
        raise FileFormatError(f"{str(root)!r} is not a directory saved by secateurs.save")
    if not path.is_file():
        raise FileFormatError(f"{str(root)!r} has no {MANIFEST}: not a directory saved by secateurs.save")
    try:
        manifest = json.loads(path.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FileFormatError(f"{path} is not valid JSON ({exc}); the file is corrupt or was edited") from None
    if not isinstance(manifest, dict) or manifest.get("format") != "secateurs":
        raise FileFormatError(f"{path} is not a secateurs manifest")
    if manifest.get("format_version") != MANIFEST_FORMAT:
        raise FileFormatError(f"{path} has format version {manifest.get('format_version')!r}; this secateurs "
                              f"({__version__}) reads version {MANIFEST_FORMAT}")
    return manifest


def _check_file(root: Path, name: str, manifest: dict[str, Any]) -> Path:
    path = root / name
    if not path.is_file():
        raise FileFormatError(f"{path} is missing; the saved directory is incomplete")
    with open(path, "rb") as f:
        head = f.read(4)
    if name in (WEIGHTS, MASKS, INT8_WEIGHTS) and head.startswith(_PICKLE_MAGIC):
        raise FileFormatError(f"{path} looks like a pickle / torch.save file, not safetensors; secateurs never "
                              "unpickles files (it could run arbitrary code). Re-save the model with secateurs.save")
    digest = (manifest.get("files") or {}).get(name)
    if digest is None:
        raise FileFormatError(f"{root / MANIFEST} has no checksum for {name}")
    if _sha256(path) != digest:
        raise FileFormatError(f"{path} does not match the checksum in {MANIFEST}: the file is truncated, corrupt or "
                              "was edited after saving")
    return path


def read_plan(directory: str | os.PathLike[str]) -> Plan:
    root = Path(directory)
    manifest = read_manifest(root)
    text = _check_file(root, PLAN, manifest).read_text("utf-8")
    return Plan.from_json(text)


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise FileFormatError(f"{path} is not a readable safetensors file ({exc})") from None


def unpruned_factory(root: Path, manifest: dict[str, Any], *, trust_code: bool = False) -> Callable[[], nn.Module]:
    """A builder of the unpruned model from the manifest's model spec (code-importing specs need ``trust_code``)."""
    from secateurs.io.specs import imports_code, resolve

    spec = manifest.get("model_spec")
    if not spec:
        raise InvalidArgumentError(f"{root} records no model spec; pass model_factory= or model= to build the unpruned model")
    if imports_code(spec) and not trust_code:
        raise InvalidArgumentError(
            f"{root} records the model spec {spec!r}, which imports and runs Python code named by the file; pass "
            "model_factory= (or model=), or trust_code=True (CLI: --trust-code) if you trust this directory")
    return resolve(spec, trust_code=trust_code).build


def load(
    directory: str | os.PathLike[str],
    model_factory: Callable[[], nn.Module] | None = None,
    model: nn.Module | None = None,
    *,
    trust_code: bool = False,
    int8: bool = False,
) -> nn.Module:
    """Rebuild a pruned model saved with :func:`save`; no pickle is ever read.

    ``int8=True`` returns the int8 model saved with it (``prune --int8``). Dynamic: the pruned architecture is
    quantized and ``model.int8.safetensors`` written into it (``model.safetensors`` may then be absent).
    Static (FX): quantized again from the float weights, the saved ranges and int8 weights loaded, and its
    output on the recorded example input checked against the one saved.

    The unpruned model comes from ``model_factory()``, a fresh unpruned ``model`` (changed in place), or,
    when neither is given, the model spec recorded in the manifest. A recorded ``module.path:factory`` spec
    imports and calls Python code named by the file, so it is used only with ``trust_code=True``.
    """
    from secateurs.compensation.replay import add_recorded_biases_, added_bias_shapes
    from secateurs.graph.analysis import fingerprint
    from secateurs.surgery.apply import apply_plan

    root = Path(directory)
    manifest = read_manifest(root)
    plan = read_plan(root)
    if int8 and not manifest.get("int8"):
        raise FileFormatError(f"{root} holds no int8 model; prune with --int8 (or save(..., int8=quantized_model))")
    int8_path = _check_file(root, INT8_WEIGHTS, manifest) if int8 else None
    static = int8 and manifest["int8"].get("mode") == "static"  # rebuilt from the float model: weights needed
    weights_path = None if int8 and not static and not (root / WEIGHTS).exists() else _check_file(root, WEIGHTS, manifest)
    model = _unpruned(root, manifest, plan, model_factory, model, trust_code)
    tensors = _read_weights(weights_path) if weights_path is not None else None
    aliases = dict(manifest.get("aliases") or {})
    expected = {**plan.shapes_after(), **added_bias_shapes(plan)}  # biases a compensation created
    if tensors is not None and weights_path is not None:
        _check_weights(_with_aliases(tensors, aliases), expected, weights_path)  # before touching the model
    qtensors = _read_weights(int8_path) if int8_path is not None else None
    masks = read_masks(root) if manifest.get("sparsity") else {}
    apply_plan(model, plan)
    add_recorded_biases_(model, plan)
    if fingerprint(model) != manifest.get("fingerprint_pruned"):
        raise PlanError(f"applying the plan in {root} did not give the saved architecture "
                        f"(fingerprint {fingerprint(model)} != {manifest.get('fingerprint_pruned')})")
    if tensors is not None and weights_path is not None:
        _load_weights(model, _with_aliases(tensors, aliases), weights_path)
    if qtensors is not None and static:
        return _rebuild_static(model, int8_path, qtensors, manifest)
    if qtensors is not None:
        from secateurs.io.int8 import load_int8_

        return load_int8_(model, qtensors, int8_path)
    if masks:
        from secateurs.sparsity.semi_structured import apply_masks_

        apply_masks_(model, masks)  # the saved weights are already zero there: this keeps the pattern exact
    if isinstance(manifest.get("training"), bool):
        model.train(manifest["training"])  # the mode it was saved in (BatchNorm and dropout behave accordingly)
    return model


def _unpruned(root: Path, manifest: dict[str, Any], plan: Plan, model_factory: Callable[[], nn.Module] | None,
              model: nn.Module | None, trust_code: bool) -> nn.Module:
    """The unpruned model to rebuild into, checked against the recorded fingerprint."""
    from secateurs.graph.analysis import fingerprint

    if model is not None and model_factory is not None:
        raise InvalidArgumentError("give load() a model_factory or a model, not both")
    if model is None:
        model_factory = model_factory or unpruned_factory(root, manifest, trust_code=trust_code)
        model = model_factory()
    if not isinstance(model, nn.Module):
        raise InvalidTypeError(f"load() needs an nn.Module to rebuild into, got {type(model).__name__}")
    from secateurs.rotation.shortcuts import add_recorded_shortcuts_

    add_recorded_shortcuts_(model, plan)  # a per-layer rotation's shortcut matrices, part of the planned model
    want = manifest.get("fingerprint_unpruned")
    got = fingerprint(model)
    if got != want or plan.fingerprint != want:
        raise PlanError(f"{root} was saved from a different model (fingerprint {want}, plan {plan.fingerprint}); the "
                        f"given model has fingerprint {got}. Pass a fresh, unpruned instance of the model the plan was made for")
    return model


def _rebuild_static(model: nn.Module, path: Any, tensors: dict[str, torch.Tensor], manifest: dict[str, Any]) -> nn.Module:
    from safetensors import safe_open

    from secateurs.io.int8_static import rebuild

    if not manifest.get("input"):
        raise FileFormatError(f"{path}: a static int8 model is rebuilt on the recorded example input, and the manifest has none")
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    example = InputSpec.from_dict(manifest["input"]).make()
    return rebuild(model.eval(), tensors, metadata, example, str(manifest["int8"].get("backend", "x86")), path)


def read_masks(directory: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The 2:4 masks saved with the model (``{weight FQN: bool mask}``, True = kept); empty when none were saved."""
    root = Path(directory)
    manifest = read_manifest(root)
    if not manifest.get("sparsity"):
        return {}
    path = _check_file(root, MASKS, manifest)
    return read_masks_file(path, read_plan(root).shapes_after())


def _with_aliases(tensors: dict[str, torch.Tensor], aliases: dict[str, str]) -> dict[str, torch.Tensor]:
    full = dict(tensors)
    for alias, name in aliases.items():
        if name in tensors:
            full[alias] = tensors[name]
    return full


def _check_weights(full: dict[str, torch.Tensor], shapes: dict[str, list[int]], path: Path) -> None:
    missing = sorted(set(shapes) - set(full))
    unexpected = sorted(set(full) - set(shapes))
    if missing or unexpected:
        raise FileFormatError(f"{path} does not hold the pruned model's tensors: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}")
    for name, t in full.items():
        if list(t.shape) != list(shapes[name]):
            raise FileFormatError(f"{path}: {name!r} has shape {list(t.shape)} but the pruned model expects {list(shapes[name])}")


def _load_weights(model: nn.Module, full: dict[str, torch.Tensor], path: Path) -> None:
    state = model.state_dict()
    _check_weights(full, {k: list(v.shape) for k, v in state.items()}, path)
    for name, t in full.items():
        if t.dtype != state[name].dtype:
            raise FileFormatError(f"{path}: {name!r} is {t.dtype} but the model expects {state[name].dtype}")
    model.load_state_dict(full, strict=True)
