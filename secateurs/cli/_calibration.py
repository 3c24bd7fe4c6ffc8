"""``--calibration DIR|FILE.txt|synthetic`` for subcommands whose criteria read data."""

from __future__ import annotations

import argparse
from typing import Any


def add_calibration_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--calibration", metavar="SOURCE",
                   help="calibration data for data criteria (wanda, activation, ...), --sparsity-2to4 wanda and --int8 "
                        "static: a folder of images, "
                        "a .txt file (tokenized with the hf: model's tokenizer, else bytes), or 'synthetic' (random "
                        "inputs: scores are then meaningless)")
    p.add_argument("--calibration-batches", type=int, default=8, metavar="N", help="at most N calibration batches (default 8)")
    p.add_argument("--calibration-normalize", choices=("imagenet", "none"), default="imagenet",
                   help="normalisation of calibration images (default imagenet mean/std)")


def needs_data(importance: str) -> bool:
    """Whether the criterion reads calibration data (``"auto"`` does whenever data is given)."""
    from secateurs.config import AUTO
    from secateurs.scoring.registry import get_criterion

    if isinstance(importance, str) and importance == AUTO:
        return True
    return bool(getattr(get_criterion(importance), "needs_data", False))


def build_calibration(args: argparse.Namespace, model_spec: str | None, spec: Any) -> Any:
    """The CalibrationSource for ``--calibration``, or None when it was not given; an ``hf:`` spec gives the tokenizer."""
    from secateurs.io.calibration_sources import calibration_source

    if not getattr(args, "calibration", None):
        return None
    tokenizer_dir = model_spec[3:] if model_spec and model_spec.startswith("hf:") else None
    return calibration_source(args.calibration, spec, max_batches=args.calibration_batches, tokenizer_dir=tokenizer_dir,
                              normalize=args.calibration_normalize)
