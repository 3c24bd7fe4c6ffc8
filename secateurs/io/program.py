"""torch.export programs (``.pt2``) in and out: a pickle-free load gate, the module to prune, pruned re-export.

``torch.export.load`` unpickles in places and falls back to a legacy layout whose loader ends in
``torch.load(weights_only=False)``. :func:`load_program` reads the file once, checks those bytes with the strict
gate of :mod:`secateurs.io.pt2_gate` (current layout only, raw tensors, no pickle, no compiled code, graph targets
and symbolic expressions from allowlists), loads the same bytes with torch's current-format loader (no legacy
fallback), and checks the loaded graph's targets again.

The module to prune is a plain ``torch.fx.GraphModule`` over the program's graph (``ExportedProgram.module()``
refuses ``eval()``/``train()``, which capture and verification call); surgery rewrites the sizes written
into its ops (``secateurs.surgery.graph_literals``).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from secateurs.errors import FileFormatError, InvalidArgumentError
from secateurs.io.atomic import staged_file, write_bytes
from secateurs.io.inputs import InputSpec
from secateurs.io.pt2_gate import check_archive_bytes, check_graph_targets


def read_archive(path: str | os.PathLike[str]) -> bytes:
    """The bytes of the ``.pt2`` at ``path`` after :func:`~secateurs.io.pt2_gate.check_archive_bytes`; load these
    bytes (not the path again), so what is loaded is what was checked."""
    root = Path(path)
    if not root.is_file():
        raise InvalidArgumentError(f"no such file: {root}")
    try:
        data = root.read_bytes()
    except OSError as exc:
        raise FileFormatError(f"cannot read {root}: {exc}") from None
    check_archive_bytes(data, root)
    return data


def check_archive(path: str | os.PathLike[str]) -> None:
    """Raise ``FileFormatError`` unless ``path`` is a torch.export archive that loads with no pickle and no code."""
    read_archive(path)


@dataclass
class Program:
    """A loaded program: the module to prune and the example inputs recorded in the archive."""

    module: torch.fx.GraphModule
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def input_spec(self) -> InputSpec | None:
        """The default input: one float tensor (its shape), or keyword token ids (their length, plus keyword
        constants such as ``use_cache=False``); None for anything else (the caller must give inputs)."""
        if len(self.args) == 1 and not self.kwargs and isinstance(self.args[0], torch.Tensor) \
                and self.args[0].is_floating_point():
            return InputSpec(shape=tuple(int(s) for s in self.args[0].shape))
        ids = self.kwargs.get("input_ids")
        constants = {k: v for k, v in self.kwargs.items() if k != "input_ids"}
        if not self.args and isinstance(ids, torch.Tensor) and ids.ndim == 2 and not ids.is_floating_point() \
                and all(isinstance(v, (bool, int, float, str, type(None))) for v in constants.values()):
            return InputSpec(seq_len=int(ids.shape[1]), vocab_size=_vocab(self.module),
                             constants=tuple(sorted(constants.items())))
        return None

    @property
    def static_batch(self) -> int | None:
        return static_batch(self.module)


def static_batch(model: torch.nn.Module) -> int | None:
    """The batch size a program module's shapes are fixed to; None for other modules and for programs whose
    batch dimension was exported dynamic."""
    if not isinstance(model, torch.fx.GraphModule) or "secateurs_program" not in model.meta:
        return None
    for node in model.graph.nodes:
        value = node.meta.get("val") if node.op == "placeholder" else None
        if isinstance(value, torch.Tensor) and value.ndim:
            size = value.shape[0]
            return int(size) if isinstance(size, int) else None
    return None


def _vocab(gm: torch.fx.GraphModule) -> int:
    for node in gm.graph.nodes:
        if node.op == "call_function" and str(node.target).startswith("aten.embedding"):
            weight = node.args[0]
            if getattr(weight, "op", None) == "get_attr":
                return int(gm.get_parameter(weight.target).shape[0])
    return 100


#: libraries whose output classes a program's pytree specs may name; importing them registers those classes
_OUTPUT_TYPE_MODULES = {"transformers": "transformers.modeling_outputs"}


def _import_output_types(data: bytes, path: Path) -> None:
    """Import the libraries whose classes the program's input/output specs name (Hugging Face ``ModelOutput``)."""
    import importlib
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as z:
        specs = b"".join(z.read(n) for n in z.namelist() if "/models/" in n and n.endswith(".json"))
    for root, module in _OUTPUT_TYPE_MODULES.items():
        if f"{root}.".encode() in specs:
            try:
                importlib.import_module(module)
            except ImportError:
                from secateurs.errors import missing_dependency

                raise missing_dependency(root, "hf", f"loading {path.name}, whose outputs are {root} classes") from None


def _load_current_format(data: bytes, path: Path) -> Any:
    """The ExportedProgram in ``data`` through torch's current-format loader: no fallback to the legacy layout."""
    try:
        from torch.export.pt2_archive._package import load_pt2
    except ImportError:
        raise FileFormatError(f"loading {path} needs torch >= 2.7 (its .pt2 archive loader); this is torch "
                              f"{torch.__version__}") from None
    try:
        contents = load_pt2(io.BytesIO(data))
        ep = contents.exported_programs.get("model")
    except Exception as exc:  # deserialization raises many types (version mismatch, unknown ops)
        raise FileFormatError(f"torch could not read the program in {path}: {type(exc).__name__}: "
                              f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}") from None
    if ep is None:
        raise FileFormatError(f"{path} holds no program named 'model'; save programs with torch.export.save")
    return ep


def load_program(path: str | os.PathLike[str]) -> Program:
    """Load a ``.pt2`` after the gate; the module is a GraphModule whose eval()/train() work."""
    data = read_archive(path)
    where = Path(path)
    _import_output_types(data, where)
    ep = _load_current_format(data, where)
    check_graph_targets(ep.graph_module, where)
    args, kwargs = ep.example_inputs if ep.example_inputs is not None else ((), {})
    return Program(program_module(ep, source=str(where.absolute())), tuple(args), dict(kwargs))


def program_module(ep: Any, *, source: str = "memory") -> torch.fx.GraphModule:
    """The module secateurs prunes for an ``ExportedProgram``: a plain GraphModule over ``ep.module()``'s graph
    (same parameter names and outputs; its ``eval()`` works), with each weight holder marked as its layer."""
    from secateurs.calibration.program_taps import mark_layouts_

    exported = ep.module()
    module = torch.fx.GraphModule(exported, exported.graph, class_name="ExportedProgramModule")
    module.meta["secateurs_program"] = source
    mark_layouts_(module)  # weight holders read as the layers whose ops use them (activation criteria)
    return module.eval()


def program_bytes(model: torch.nn.Module, example_inputs: Any) -> bytes:
    """``model`` exported with ``torch.export`` and serialized as a ``.pt2`` archive (weights as raw tensors).

    A program that was loaded with dynamic dimensions (a ``sym_size`` batch) is exported with the same dimensions
    dynamic again (``Dim.AUTO``), so pruning does not pin it to the example's batch size."""
    from secateurs.graph.capture import export_model, model_inputs

    dynamic = _dynamic_shapes(model, example_inputs)
    if dynamic is None:
        ep = export_model(model, example_inputs)
    else:
        from secateurs.graph.capture import eval_mode

        args, kwargs = model_inputs(model, example_inputs)
        with eval_mode(model), torch.no_grad():
            ep = torch.export.export(model, args, kwargs, dynamic_shapes=dynamic, strict=False)
    buffer = io.BytesIO()
    torch.export.save(ep, buffer)
    return buffer.getvalue()


def _dynamic_shapes(model: torch.nn.Module, example_inputs: Any) -> Any:
    """``dynamic_shapes`` for re-exporting a program whose placeholders have symbolic sizes; None when all static
    (or when its inputs mix positional and keyword tensors, which is exported static)."""
    from torch.utils._pytree import tree_flatten, tree_unflatten

    from secateurs.graph.capture import normalize_inputs

    if not isinstance(model, torch.fx.GraphModule) or "secateurs_program" not in model.meta:
        return None
    values = [n.meta.get("val") for n in model.graph.nodes if n.op == "placeholder"]
    symbolic = [{d: torch.export.Dim.AUTO for d, size in enumerate(getattr(v, "shape", ())) if not isinstance(size, int)}
                for v in values]
    if not any(symbolic):
        return None
    args, kwargs = normalize_inputs(example_inputs)
    if args and kwargs:
        return None
    leaves, spec = tree_flatten(args if args else kwargs)
    if len(leaves) != len(symbolic):
        return None
    specs = [s or None if isinstance(leaf, torch.Tensor) else None for s, leaf in zip(symbolic, leaves, strict=True)]
    return tree_unflatten(specs, spec)


def save_program(model: torch.nn.Module, example_inputs: Any, path: str | os.PathLike[str]) -> Path:
    """Export ``model`` and write the ``.pt2`` to ``path`` via a temp file and a rename (no partial file on failure)."""
    target = Path(path).absolute()
    data = program_bytes(model, example_inputs)
    with staged_file(target) as tmp:
        write_bytes(tmp, data)
    return target
