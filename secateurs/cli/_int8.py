"""``--int8 [dynamic|static]`` shared by ``prune`` and ``export``; the int8 model of ``prune --qat``."""

from __future__ import annotations

import argparse
from typing import Any

from secateurs.cli._common import step
from secateurs.errors import InvalidArgumentError


def add_int8_flag(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--int8", nargs="?", const="dynamic", default=None, choices=("dynamic", "static"), metavar="MODE",
                   help=help)
    p.add_argument("--int8-backend", choices=("x86", "xnnpack"), default="x86",
                   help="PT2E quantizer for --int8 static: x86 (oneDNN kernels, default) or xnnpack (for executorch; needs executorch)")


def check_int8(args: argparse.Namespace) -> None:
    if args.int8 == "static" and not getattr(args, "calibration", None):
        raise InvalidArgumentError("--int8 static needs calibration data to set activation ranges: pass --calibration "
                                   "DIR (images) or synthetic (random inputs: ranges will not match real data)")
    if args.int8 == "static":
        from secateurs.io.calibration_sources import source_kind

        source_kind(args.calibration)


def int8_exports(args: argparse.Namespace, model: Any, x: Any, batches: list[Any] | None) -> tuple[dict[str, Any], Any]:
    """Quantize a copy of ``model``: ``({"int8" or "int8_static": stats}, quantized model)``; the caller saves the
    model as model.int8.safetensors."""
    if args.int8 == "static":
        from secateurs.quantization.static import quantize_static_int8

        step(args, f"int8 static quantization ({args.int8_backend}) with {len(batches or [])} calibration batches")
        qmodel, stats = quantize_static_int8(model, x, batches or [], backend=args.int8_backend)
        return {"int8_static": {**stats, "file": "model.int8.safetensors"}}, qmodel
    from secateurs.quantization.dynamic import quantize_int8

    step(args, "int8 dynamic quantization of Linear layers")
    qmodel, stats = quantize_int8(model, x)
    return {"int8": {**stats, "file": "model.int8.safetensors"}}, qmodel


def qat_exports(args: argparse.Namespace, model: Any, x: Any) -> tuple[dict[str, Any], Any]:
    """The int8 model of a model trained by ``prune --qat`` (``sc.convert_int8``: the ranges learned in training),
    with its fidelity against the float model and, unless ``--no-bench``, its latency."""
    import secateurs as sc
    from secateurs.io.int8_static import converted_of
    from secateurs.quantization.static import int8_stats, quantized_layers

    step(args, "converting the quantization-aware trained model to int8 (x86)")
    qmodel = sc.convert_int8(model, x)
    stats = {"method": "PT2E QAT (x86, torchao)", "dtype": "int8 activations (uint8 on x86), int8 weights",
             "qat_steps": args.distill_steps, "quantized": quantized_layers(converted_of(qmodel)[0]),
             **int8_stats(model, qmodel, x, latency=not args.no_bench)}
    return {"int8_static": {**stats, "file": "model.int8.safetensors"}}, qmodel
