"""load(): rebuild a pruned model saved with ``save``, all or nothing, never unpickling anything.

Every file is checked before the model is touched (manifest field types, checksums, safetensors headers,
the plan's fields and consistency, tensor names, shapes and dtypes); the model is then changed under a
restore point (``io/transaction.py``): if anything fails afterwards, a model passed in is left exactly as it
was. The architecture is compared on tensor names and shapes; dtypes are checked separately, so a model
saved in float16/bfloat16 after pruning loads back in that precision into a float32 instance.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from secateurs.errors import FileFormatError, InvalidArgumentError, InvalidTypeError, PlanError
from secateurs.io.inputs import InputSpec
from secateurs.io.int8 import INT8_WEIGHTS
from secateurs.io.manifest import (
    PLAN,
    WEIGHTS,
    architecture,
    as_path,
    check_file,
    check_source,
    read_manifest,
)
from secateurs.io.masks import MASKS, read_masks_file
from secateurs.plans import Plan


def read_plan(directory: str | os.PathLike[str], manifest: dict[str, Any] | None = None) -> Plan:
    """The plan of a saved directory, checksum-verified and validated."""
    root = as_path(directory, "the saved directory")
    manifest = manifest if manifest is not None else read_manifest(root)
    path = check_file(root, PLAN, manifest)
    try:
        text = path.read_text("utf-8")
    except UnicodeDecodeError:
        raise FileFormatError(f"{path} is not UTF-8 text") from None
    return Plan.from_json(text)


def read_masks(directory: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The 2:4 masks saved with the model (``{weight FQN: bool mask}``, True = kept); empty when none were saved."""
    root = as_path(directory, "the saved directory")
    manifest = read_manifest(root)
    if not manifest.get("sparsity"):
        return {}
    path = check_file(root, MASKS, manifest)
    return read_masks_file(path, read_plan(root, manifest).shapes_after())


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as exc:
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
    check_source(Path(root), manifest)
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

    The unpruned model comes from ``model_factory()``, a fresh unpruned ``model`` (changed in place; left exactly
    as it was if loading fails), or, when neither is given, the model spec recorded in the manifest. A recorded
    ``module.path:factory`` spec imports and calls Python code named by the file, so it is used only with
    ``trust_code=True``. The weights are loaded with the dtypes they were saved in.
    """
    root = as_path(directory, "load()'s directory")
    if model is not None and model_factory is not None:
        raise InvalidArgumentError("give load() a model_factory or a model, not both")
    if model_factory is not None and not callable(model_factory):
        raise InvalidTypeError(f"load()'s model_factory must be a callable returning the unpruned model, got "
                               f"{type(model_factory).__name__}")
    if model is not None and not isinstance(model, nn.Module):
        raise InvalidTypeError(f"load() needs an nn.Module to rebuild into, got {type(model).__name__}")
    manifest = read_manifest(root)
    plan = read_plan(root, manifest)
    if int8 and not manifest.get("int8"):
        raise FileFormatError(f"{root} holds no int8 model; prune with --int8 (or save(..., int8=quantized_model))")
    int8_path = check_file(root, INT8_WEIGHTS, manifest) if int8 else None
    static = int8 and manifest["int8"].get("mode") == "static"  # rebuilt from the float model: weights needed
    skip_weights = int8 and not static and not os.path.lexists(root / WEIGHTS)
    weights_path = None if skip_weights else check_file(root, WEIGHTS, manifest)
    tensors = _read_weights(weights_path) if weights_path is not None else None
    expected = _expected_shapes(plan)
    full = _with_aliases(tensors, dict(manifest.get("aliases") or {})) if tensors is not None else None
    if full is not None and weights_path is not None:
        _check_weights(full, expected, weights_path)
        _check_dtypes(tensors or {}, manifest, weights_path)
    qtensors = _read_weights(int8_path) if int8_path is not None else None
    masks = read_masks(root) if manifest.get("sparsity") else {}
    model = _unpruned(root, manifest, plan, model_factory, model, trust_code)
    from secateurs.io.transaction import RestorePoint

    restore_point = RestorePoint(model)
    try:
        return _rebuild(model, root, manifest, plan, expected, full, weights_path, int8_path, qtensors, masks)
    except BaseException:
        restore_point.restore()
        raise


def _rebuild(model: nn.Module, root: Path, manifest: dict[str, Any], plan: Plan, expected: dict[str, list[int]],
             full: dict[str, torch.Tensor] | None, weights_path: Path | None, int8_path: Path | None,
             qtensors: dict[str, torch.Tensor] | None, masks: dict[str, torch.Tensor]) -> nn.Module:
    """Apply the plan and the saved tensors to the unpruned ``model`` (the caller restores it on failure)."""
    from secateurs.compensation.replay import add_recorded_biases_
    from secateurs.surgery.apply import apply_plan

    apply_plan(model, plan)
    add_recorded_biases_(model, plan)
    _check_pruned(model, root, manifest, expected)
    if full is not None and weights_path is not None:
        _assign_weights_(model, full, weights_path)
    if qtensors is not None and manifest["int8"].get("mode") == "static":
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


def _expected_shapes(plan: Plan) -> dict[str, list[int]]:
    from secateurs.compensation.replay import added_bias_shapes

    try:
        return {**plan.shapes_after(), **added_bias_shapes(plan)}  # biases a compensation created
    except (TypeError, ValueError, AttributeError) as exc:
        raise FileFormatError(f"the plan's compensation record is malformed ({exc})") from None


def _unpruned(root: Path, manifest: dict[str, Any], plan: Plan, model_factory: Callable[[], nn.Module] | None,
              model: nn.Module | None, trust_code: bool) -> nn.Module:
    """The unpruned model to rebuild into; its tensor names and shapes must be those the plan was made for."""
    if model is None:
        model_factory = model_factory or unpruned_factory(root, manifest, trust_code=trust_code)
        model = model_factory()
    if not isinstance(model, nn.Module):
        raise InvalidTypeError(f"load() needs an nn.Module to rebuild into, got {type(model).__name__}")
    from secateurs.rotation.shortcuts import add_recorded_shortcuts_

    add_recorded_shortcuts_(model, plan)  # a per-layer rotation's shortcut matrices, part of the planned model
    state = model.state_dict(keep_vars=True)
    got = {name: list(t.shape) for name, t in state.items()}
    if got != plan.shapes:
        differ = sorted(set(got) ^ set(plan.shapes)) or sorted(n for n in got if got[n] != plan.shapes[n])
        raise PlanError(f"{root} was saved from a different model (fingerprint {plan.fingerprint}): the given model "
                        f"differs in {differ[:3]}. Pass a fresh, unpruned instance of the model the plan was made for")
    return model


def _check_pruned(model: nn.Module, root: Path, manifest: dict[str, Any], expected: dict[str, list[int]]) -> None:

    state = model.state_dict(keep_vars=True)
    recorded = manifest.get("architecture_pruned")
    shapes = {name: list(t.shape) for name, t in state.items()}
    if shapes != expected or (recorded is not None and architecture(state) != recorded):
        raise PlanError(f"applying the plan in {root} did not give the saved architecture (tensor names or shapes "
                        "differ); the surgery handlers of this secateurs version differ from the saving one")


def _with_aliases(tensors: dict[str, torch.Tensor], aliases: dict[str, str]) -> dict[str, torch.Tensor]:
    full = dict(tensors)
    for alias, name in aliases.items():
        if name in tensors:
            full[alias] = tensors[name]
    return full


def _check_weights(full: Mapping[str, torch.Tensor], shapes: Mapping[str, list[int]], path: Path) -> None:
    missing = sorted(set(shapes) - set(full))
    unexpected = sorted(set(full) - set(shapes))
    if missing or unexpected:
        raise FileFormatError(f"{path} does not hold the pruned model's tensors: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}")
    for name, t in full.items():
        if list(t.shape) != list(shapes[name]):
            raise FileFormatError(f"{path}: {name!r} has shape {list(t.shape)} but the pruned model expects {list(shapes[name])}")


def _check_dtypes(tensors: Mapping[str, torch.Tensor], manifest: dict[str, Any], path: Path) -> None:
    recorded = manifest.get("dtypes")
    if recorded is None:
        return  # saved before dtypes were recorded
    for name, t in tensors.items():
        if recorded.get(name) != str(t.dtype).removeprefix("torch."):
            raise FileFormatError(f"{path}: {name!r} is {t.dtype} but the manifest records {recorded.get(name)!r}")


def _assign_weights_(model: nn.Module, full: Mapping[str, torch.Tensor], path: Path) -> None:
    """Replace every parameter and buffer with its saved tensor (tied tensors stay one object, dtypes as saved,
    on the device the model's tensor was on); existing tensors are never written into."""
    state = model.state_dict(keep_vars=True)
    _check_weights(full, {k: list(v.shape) for k, v in state.items()}, path)
    owners: dict[int, list[tuple[nn.Module, str]]] = {}
    first: dict[int, str] = {}
    for prefix, module in model.named_modules(remove_duplicate=False):
        for attr, t in [*module._parameters.items(), *module._buffers.items()]:
            name = f"{prefix}.{attr}" if prefix else attr
            if t is not None and name in state:
                owners.setdefault(id(t), []).append((module, attr))
                first.setdefault(id(t), name)
    for name, old in state.items():
        new = full[name]
        if new.dtype != old.dtype and not (new.is_floating_point() and old.is_floating_point()):
            raise FileFormatError(f"{path}: {name!r} is {new.dtype} but the model holds {old.dtype}")
    for key, name in first.items():
        old = state[name]
        new = full[name].to(old.device)
        param = nn.Parameter(new, requires_grad=old.requires_grad) if isinstance(old, nn.Parameter) else None
        for module, attr in owners[key]:
            if param is not None:
                module._parameters[attr] = param
            else:
                module._buffers[attr] = new
    covered = {name for name, t in state.items() if id(t) in first}
    if covered != set(state):  # entries a module names itself (custom state_dict hooks): loaded in place
        model.load_state_dict({k: full[k] for k in set(state) - covered}, strict=False)


def _rebuild_static(model: nn.Module, path: Any, tensors: dict[str, torch.Tensor], manifest: dict[str, Any]) -> nn.Module:
    from safetensors import safe_open

    from secateurs.io.int8_static import rebuild

    if not manifest.get("input"):
        raise FileFormatError(f"{path}: a static int8 model is rebuilt on the recorded example input, and the manifest has none")
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    example = InputSpec.from_dict(manifest["input"]).make()
    return rebuild(model.eval(), tensors, metadata, example, str(manifest["int8"].get("backend", "x86")), path)
