"""``prune --sparsity-2to4 [magnitude|wanda]``: 2:4 masks on Linear weights after structured pruning."""

from __future__ import annotations

import argparse
from typing import Any


def add_sparsity_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sparsity-2to4", nargs="?", const="magnitude", default=None, choices=("magnitude", "wanda"),
                   metavar="METHOD", help="after pruning, mask every Linear weight to 2:4 (2 kept of each 4 inputs) "
                   "scored by magnitude (default) or wanda (needs --calibration); masks are saved with the model")
    p.add_argument("--sparsity-ignore", action="append", default=[], metavar="PATTERN",
                   help="Linear layer path or glob left dense by --sparsity-2to4 (repeatable)")


def sparsify(args: argparse.Namespace, model: Any, x: Any, calibration: Any) -> tuple[Any, dict[str, Any]]:
    """Apply the 2:4 masks in place; (SparsityResult, its report section with the output change it caused)."""
    import torch

    from secateurs.graph.capture import normalize_inputs
    from secateurs.graph.outputs import flat_tensors
    from secateurs.quantization.dynamic import fidelity
    from secateurs.sparsity import sparsify_2to4

    a, kw = normalize_inputs(x)
    with torch.inference_mode():
        before = flat_tensors(model(*a, **kw))
    result = sparsify_2to4(model, args.sparsity_2to4, calibration=calibration, ignore=args.sparsity_ignore or None)
    with torch.inference_mode():
        after = flat_tensors(model(*a, **kw))
    section = {**result.to_dict(), "fidelity": fidelity(before, after)}
    if torch.cuda.is_available():
        section["notes"].append("CUDA is available: convert for inference with secateurs.sparsity.to_semi_structured_ "
                                "after model.half().cuda() (not done by the CLI, which measures on CPU)")
    return result, section
