"""``secateurs prune hf:DIR -o OUT --out-of-core``: the checkpoint pruned part by part (``secateurs.outofcore``).

Chosen by the flag, or by itself when the checkpoint would not fit: its weight bytes times 1.25 (the in-memory
prune's peak) plus 1 GiB for the interpreter exceed the memory available now (``MemAvailable``). OUT is then a
Hugging Face directory (shards, index, config, tokenizer files, plan.json) that ``from_pretrained`` loads.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from secateurs.cli._common import emit_json, say, step
from secateurs.config import PruneConfig
from secateurs.errors import InvalidArgumentError

#: in-memory prune peak per weight byte (docs/benchmarks.md: 1.21x measured on an 8-layer 8B slice) and the
#: interpreter with torch and transformers
PEAK_PER_BYTE = 1.25
BASE_BYTES = 2**30


def add_outofcore_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out-of-core", action="store_true",
                   help="hf:DIR only: prune the checkpoint one decoder layer at a time, never holding the model, and "
                        "write a Hugging Face checkpoint to OUT (chosen by itself when the model would not fit in memory)")


def available_memory() -> int | None:
    """MemAvailable of /proc/meminfo in bytes (None where there is no such file)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def wants_out_of_core(args: argparse.Namespace) -> bool:
    """True with --out-of-core, or for an ``hf:`` checkpoint whose in-memory prune would not fit (said on stderr)."""
    spec = str(args.model)
    if getattr(args, "out_of_core", False):
        if not spec.startswith("hf:"):
            raise InvalidArgumentError(f"--out-of-core prunes Hugging Face checkpoint directories (hf:DIR), not {spec!r}")
        return True
    if not spec.startswith("hf:") or args.dry_run:
        return False
    from secateurs.outofcore.checkpoint import Checkpoint

    try:
        need = Checkpoint(spec[3:]).total_bytes * PEAK_PER_BYTE + BASE_BYTES
    except InvalidArgumentError:
        return False  # no safetensors (or no config): the in-memory path says what is wrong
    free = available_memory()
    if free is None or need <= free:
        return False
    step(args, f"the checkpoint needs about {need / 2**30:.1f} GiB to prune in memory, {free / 2**30:.1f} GiB are "
               "available: pruning it out of core, one decoder layer at a time (--out-of-core)")
    return True


def _refuse_flags(args: argparse.Namespace) -> None:
    for flag, given in (("--dry-run", args.dry_run), ("--sparsity-2to4", args.sparsity_2to4), ("--int8", args.int8),
                        ("--qat", args.qat), ("--distill-steps", args.distill_steps)):
        if given:
            raise InvalidArgumentError(f"{flag} is not available out of core; prune first, then run it on the pruned "
                                       "checkpoint if it fits in memory")


def run_out_of_core(args: argparse.Namespace, config: PruneConfig, calibration_for: Any) -> int:
    """Prune ``args.model`` (hf:DIR) into ``args.output``; ``calibration_for(source, spec)`` gives the batches."""
    from secateurs.cli._common import input_spec
    from secateurs.io.specs import resolve
    from secateurs.outofcore import prune_checkpoint

    _refuse_flags(args)
    source = resolve(args.model)
    spec = input_spec(args, source.default_input)
    batches = calibration_for(source, spec)
    step(args, f"pruning {source.spec} out of core into {args.output} (no latency measurement)")
    x = {**spec.make(), "use_cache": False}
    report = prune_checkpoint(str(args.model)[3:], args.output, x, config, calibration=batches, overwrite=args.force)
    emit_json(args, {"out_of_core": True, **report.to_dict()})
    say(args, report.summary())
    say(args, f"saved to {args.output} (Hugging Face checkpoint: from_pretrained loads it; plan.json beside it)")
    return 0
