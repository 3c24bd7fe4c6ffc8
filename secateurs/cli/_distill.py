"""``prune --distill-steps N``: recover the pruned model by logit distillation from the unpruned one (Minitron).

With ``--importance activation`` (width), ``--drop-layers N`` (depth) and ``--distill-steps`` this is the
Minitron recipe in one command (NVIDIA, 2024, "Compact Language Models via Pruning and Knowledge Distillation").
The teacher is a copy of the model taken before pruning; the data are the ``--calibration`` batches, cycled.
``--qat`` makes these steps quantization-aware (int8 fake quantization, ``recover(..., qat="int8")``); the trained
model is then converted to int8 (``cli/_int8.py``, ``qat_exports``) and saved as ``model.int8.safetensors``.
"""

from __future__ import annotations

import argparse
import copy
from typing import Any

from secateurs.cli._common import is_quiet
from secateurs.errors import InvalidArgumentError


def add_distill_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--distill-steps", type=int, default=0, metavar="N",
                   help="after pruning, N steps of logit distillation from the unpruned model on the --calibration "
                        "batches (Minitron: with --importance activation and --drop-layers)")
    p.add_argument("--distill-loss", choices=("kl", "reverse_kl"), default="kl",
                   help="forward KL (default) or MiniLLM's reverse KL")
    p.add_argument("--distill-lr", type=float, default=1e-4, metavar="LR", help="AdamW learning rate (default 1e-4)")
    p.add_argument("--distill-temperature", type=float, default=1.0, metavar="T", help="softmax temperature (default 1)")
    p.add_argument("--qat", action="store_true",
                   help="quantization-aware recovery: the --distill-steps train with int8 fake quantization (PT2E, x86 "
                        "quantizer, torchao), then the model is converted to int8 and written as DIR/model.int8.safetensors "
                        "(needs --calibration and --distill-steps; replaces --int8)")


def check_distill(args: argparse.Namespace) -> None:
    if args.distill_steps < 0:
        raise InvalidArgumentError(f"--distill-steps must be >= 0, got {args.distill_steps}")
    if args.distill_steps and not args.calibration:
        raise InvalidArgumentError("--distill-steps distils on the --calibration batches: pass --calibration FILE.txt "
                                   "(text for a language model), a folder of images, or synthetic")
    if args.distill_steps and not args.distill_lr > 0:
        raise InvalidArgumentError(f"--distill-lr must be positive, got {args.distill_lr}")
    if getattr(args, "qat", False):
        check_qat(args)


def check_qat(args: argparse.Namespace) -> None:
    """``--qat`` trains in the recovery step, on data, for the x86 quantizer, and makes the int8 model itself."""
    if not args.calibration:
        raise InvalidArgumentError("--qat fine-tunes with fake quantization on training data: pass --calibration DIR "
                                   "(images), FILE.txt (text) or synthetic, with --distill-steps N")
    if not args.distill_steps:
        raise InvalidArgumentError("--qat trains during the recovery step: pass --distill-steps N (N fake-quantized "
                                   "distillation steps from the unpruned model on the --calibration batches)")
    if args.int8:
        raise InvalidArgumentError(f"--qat writes the int8 model itself (converted from the fake-quantized training); "
                                   f"drop --int8 {args.int8}")
    if args.int8_backend != "x86":
        raise InvalidArgumentError(f"--qat trains for the x86 quantizer; --int8-backend {args.int8_backend} is not "
                                   "supported with it (use export --executorch int8 for XNNPACK)")
    if getattr(args, "sparsity_2to4", None):
        raise InvalidArgumentError("--qat cannot be combined with --sparsity-2to4: the masks are applied after the "
                                   "recovery step, so the int8 model converted from training would not have them")
    from secateurs.quantization.pt2e import require_torchao

    require_torchao()  # MissingDependencyError before the model is built


def check_qat_inputs(args: argparse.Namespace, example_inputs: Any) -> None:
    """``--qat`` ends in the x86 int8 lowering, which takes positional tensors: refuse keyword models before pruning."""
    from secateurs.graph.capture import normalize_inputs

    if getattr(args, "qat", False) and normalize_inputs(example_inputs)[1]:
        raise InvalidArgumentError(f"--qat converts to x86 int8 kernels, which take positional tensor inputs; this "
                                   f"model takes keywords {sorted(normalize_inputs(example_inputs)[1])}: use "
                                   "--distill-steps with --int8 dynamic instead")


def teacher_copy(args: argparse.Namespace, model: Any) -> Any:
    """The unpruned model to distil from (None without --distill-steps)."""
    return copy.deepcopy(model).eval() if args.distill_steps else None


def distill(args: argparse.Namespace, model: Any, teacher: Any, batches: list[Any]) -> dict[str, Any]:
    """Distil in place; the report section (steps, loss, first and last epoch losses)."""
    import torch

    import secateurs as sc

    data = [(b, None) for b in batches]
    result = sc.recover(model, data, teacher=teacher, distill_loss=args.distill_loss, temperature=args.distill_temperature,
                        steps=args.distill_steps, seed=0, max_grad_norm=1.0, progress=not is_quiet(args),
                        optimizer=lambda p: torch.optim.AdamW(p, lr=args.distill_lr, weight_decay=0.0),
                        qat="int8" if getattr(args, "qat", False) else None)
    model.eval()
    return {"steps": result.steps, "loss": args.distill_loss, "lr": args.distill_lr,
            "temperature": args.distill_temperature, "batches": len(batches), "epoch_losses": result.losses,
            **({"qat": "int8 (x86)"} if getattr(args, "qat", False) else {})}
