"""``secateurs export DIR --onnx/--pt2/--executorch/--int8``: deployable files from a pruned directory, checked against PyTorch."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from secateurs.cli._calibration import add_calibration_flags, build_calibration
from secateurs.cli._common import (
    add_output_flags,
    add_trust_flag,
    check_input,
    emit_json,
    input_spec,
    say,
    set_threads,
    step,
    trust_code,
)
from secateurs.cli._int8 import add_int8_flag, check_int8, int8_exports
from secateurs.cli.config import add_config_flags
from secateurs.errors import InvalidArgumentError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a pruned directory to ONNX and/or int8 (dynamic or static quantization)")
    p.add_argument("directory", metavar="DIR", help="a directory written by 'secateurs prune'")
    p.add_argument("--onnx", action="store_true", help="write DIR/model.onnx, checked with onnxruntime")
    p.add_argument("--pt2", action="store_true",
                   help="write DIR/model.pt2 (torch.export program, for ExecuTorch/AOTInductor), reloaded and checked")
    p.add_argument("--executorch", nargs="?", const="fp32", default=None, choices=("fp32", "int8", "both"),
                   metavar="DTYPE", help="write DIR/model.pte (fp32, default) and/or DIR/model.int8.pte (int8, PT2E with "
                   "the XNNPACK quantizer, needs --calibration) for ExecuTorch's XNNPACK backend, run by the executorch "
                   "runtime and compared with PyTorch (needs pip install 'secateurs[edge]')")
    add_int8_flag(p, "int8 quantization, fidelity and latency in the report: dynamic (default; Linear layers; with "
                     "--onnx also DIR/model.int8.onnx) or static (convs and Linear via PT2E, needs --calibration)")
    add_calibration_flags(p)
    p.add_argument("--exporter", choices=("auto", "dynamo", "legacy"), default="auto",
                   help="torch.onnx exporter: auto tries dynamo, then legacy (default auto)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset version")
    p.add_argument("--input-shape", metavar="N,C,H,W", help="override the input recorded at prune time")
    p.add_argument("--seq-len", type=int, metavar="N", help="override the sequence length recorded at prune time")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default 1)")
    p.add_argument("--no-bench", action="store_true",
                   help="skip timing DIR/model.onnx against the unpruned model's ONNX (onnxruntime, interleaved)")
    p.add_argument("--repeats", type=int, default=10, help="timed onnxruntime runs per file; the median is reported")
    add_trust_flag(p)
    add_config_flags(p, "export", example="opset=17")
    add_output_flags(p)
    p.set_defaults(run=run)


def _staged(root: Path, name: str, write: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """Run ``write(temp path)``, then rename the file to ``root/name``: a failure leaves no partial file."""
    from secateurs.io.atomic import staged_file

    with staged_file(root / name) as tmp:
        info = write(tmp)
    info["file"] = name
    return info


def _export_onnx(args: argparse.Namespace, root: Path, model: Any, x: Any, manifest: dict[str, Any]) -> dict[str, Any]:
    from secateurs.export.onnx import export_onnx

    step(args, f"exporting ONNX ({args.exporter} exporter) and checking it with onnxruntime")
    info = _staged(root, "model.onnx", lambda tmp: export_onnx(model, x, tmp, exporter=args.exporter, opset=args.opset))
    if not args.no_bench:
        info["timing"] = _against_unpruned(args, root, manifest, x)
    return info


def _against_unpruned(args: argparse.Namespace, root: Path, manifest: dict[str, Any], x: Any) -> dict[str, Any]:
    """onnxruntime latency of DIR/model.onnx next to the unpruned model exported the same way (not kept)."""
    import tempfile

    from secateurs.errors import SecateursError
    from secateurs.export.onnx import export_onnx
    from secateurs.export.onnx_timing import ort_interleaved_ms
    from secateurs.io.saving import unpruned_factory

    if args.repeats < 1:
        raise InvalidArgumentError(f"--repeats must be at least 1, got {args.repeats}")
    try:
        unpruned = unpruned_factory(root, manifest, trust_code=trust_code(args))()
    except SecateursError as exc:
        return {"skipped": f"the unpruned model cannot be rebuilt here ({exc})"}
    step(args, f"timing model.onnx against the unpruned model's ONNX (onnxruntime, median of {args.repeats}, interleaved)")
    with tempfile.TemporaryDirectory(prefix="secateurs-onnx-") as tmp:
        reference = Path(tmp) / "unpruned.onnx"
        export_onnx(unpruned, x, reference, exporter=args.exporter, opset=args.opset, check=False)
        pruned_ms, unpruned_ms = ort_interleaved_ms([root / "model.onnx", reference], x, repeats=args.repeats,
                                                    threads=args.threads)
    return {"pruned_ms": pruned_ms, "unpruned_ms": unpruned_ms, "speedup": unpruned_ms / pruned_ms,
            "threads": args.threads, "repeats": args.repeats, "runtime": "onnxruntime CPUExecutionProvider"}


def _write_program(model: Any, x: Any, path: Path) -> dict[str, Any]:
    """Write the program to ``path``, load it back through the pickle-free loader and compare its outputs."""
    import torch

    from secateurs.graph.capture import normalize_inputs
    from secateurs.graph.outputs import flat_tensors
    from secateurs.io.atomic import write_bytes
    from secateurs.io.program import load_program, program_bytes

    write_bytes(path, program_bytes(model, x))
    a, k = normalize_inputs(x)
    with torch.inference_mode():
        ref, got = flat_tensors(model(*a, **k)), flat_tensors(load_program(path).module(*a, **k))
    diff = max((float((r.float() - g.float()).abs().max()) for r, g in zip(ref, got, strict=True) if r.numel()), default=0.0)
    return {"bytes": path.stat().st_size, "max_abs_diff": diff, "parity_ok": diff <= 1e-5 * max(
        1.0, max((float(r.float().abs().max()) for r in ref if r.numel()), default=1.0))}


def _int8(args: argparse.Namespace, root: Path, model: Any, x: Any, calibration: Any) -> dict[str, Any]:
    """PyTorch int8 stats and, with --onnx, DIR/model.int8.onnx. A model PyTorch cannot quantize (a .pt2 program
    has no nn.Linear modules) still gets the ONNX file when --onnx is given."""
    key = "int8_static" if args.int8 == "static" else "int8"
    try:
        exports, qmodel = int8_exports(args, model, x, calibration.batches if calibration else None)
    except InvalidArgumentError as exc:
        if not args.onnx:
            raise
        exports, qmodel = {key: {"pytorch_skipped": str(exc)}}, None
    if qmodel is not None:
        from secateurs.io.saving import add_int8

        step(args, "writing model.int8.safetensors")
        add_int8(root, qmodel)
    if args.onnx and calibration is not None:
        from secateurs.export.onnx_static import onnx_int8_static

        step(args, "int8 static ONNX quantization with onnxruntime (QDQ)")
        exports[key]["onnx"] = _staged(root, "model.int8.onnx", lambda tmp: onnx_int8_static(
            root / "model.onnx", tmp, model, x, calibration.batches))
    if args.onnx and args.int8 == "dynamic":
        from secateurs.export.onnx import onnx_int8

        step(args, "int8 dynamic ONNX quantization with onnxruntime")
        exports[key]["onnx"] = _staged(root, "model.int8.onnx", lambda tmp: onnx_int8(root / "model.onnx", tmp, model, x))
    return exports


def _executorch(args: argparse.Namespace, root: Path, model: Any, x: Any, calibration: Any) -> dict[str, Any]:
    from secateurs.export.executorch import export_executorch

    out: dict[str, Any] = {}
    if args.executorch in ("fp32", "both"):
        step(args, "exporting model.pte (ExecuTorch, XNNPACK, fp32) and running it with the executorch runtime")
        out["fp32"] = _staged(root, "model.pte", lambda tmp: export_executorch(model, x, tmp))
    if args.executorch in ("int8", "both"):
        step(args, "exporting model.int8.pte (ExecuTorch, XNNPACK, int8) and running it with the executorch runtime")
        out["int8"] = _staged(root, "model.int8.pte", lambda tmp: export_executorch(
            model, x, tmp, int8=True, calibration=calibration.batches))
    return out


def _written(exports: dict[str, Any]) -> list[str]:
    """The file names recorded in the export entries (``"file": "model.onnx"``, nested for int8 ONNX)."""
    names, stack = [], [exports]
    while stack:
        entry = stack.pop()
        for key, value in entry.items():
            if key == "file" and isinstance(value, str):
                names.append(value)
            elif isinstance(value, dict):
                stack.append(value)
    return sorted(set(names))


def run(args: argparse.Namespace) -> int:
    from secateurs.io.inputs import InputSpec
    from secateurs.io.saving import load, read_manifest

    if not (args.onnx or args.int8 or args.pt2 or args.executorch):
        raise InvalidArgumentError("nothing to export: pass --onnx, --pt2, --executorch and/or --int8")
    check_int8(args)
    if args.executorch in ("int8", "both") and not args.calibration:
        raise InvalidArgumentError("--executorch int8 needs calibration data to set activation ranges: pass "
                                   "--calibration DIR (images) or synthetic (random inputs)")
    set_threads(args)
    root = Path(args.directory)
    manifest = read_manifest(root)
    from secateurs.io.atomic import check_writable

    check_writable(root / "model.onnx")  # files are written into DIR: a read-only DIR fails before any work
    recorded = InputSpec.from_dict(manifest["input"]) if manifest.get("input") else None
    spec = input_spec(args, recorded)
    step(args, f"loading {root}")
    model = load(root, trust_code=trust_code(args)).eval()
    check_input(model, spec)
    x = spec.make()
    exports: dict[str, Any] = {}
    if args.onnx:
        exports["onnx"] = _export_onnx(args, root, model, x, manifest)
    if args.pt2:
        step(args, "exporting the pruned model as a torch.export program (model.pt2)")
        exports["pt2"] = _staged(root, "model.pt2", lambda tmp: _write_program(model, x, tmp))
    needs_data = args.int8 == "static" or args.executorch in ("int8", "both")
    calibration = build_calibration(args, manifest.get("model_spec"), spec) if needs_data else None
    if args.executorch:
        exports["executorch"] = _executorch(args, root, model, x, calibration)
    if args.int8:
        exports.update(_int8(args, root, model, x, calibration if args.int8 == "static" else None))
    if (root / "report.json").is_file():
        from secateurs.cli.report import read_report, write_reports

        doc = read_report(root)
        doc.setdefault("exports", {}).update(exports)
        write_reports(root, doc)
    from secateurs.io.saving import record_files

    record_files(root, _written(exports))  # the manifest lists a checksum for every file in the directory
    emit_json(args, {"directory": str(root), "exports": exports})
    from secateurs.reporting.render import export_lines

    for line in export_lines({"exports": exports}):  # the same lines the report gets
        say(args, line.replace("`", ""))
    checked = [exports.get(k, {}) for k in ("onnx", "pt2")] + list(exports.get("executorch", {}).values())
    return 0 if all(e.get("parity_ok", True) for e in checked) else 3
