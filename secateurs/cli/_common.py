"""Shared CLI plumbing: common flags, model/input resolution, output that respects --json and --quiet."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from secateurs.errors import InvalidArgumentError

if TYPE_CHECKING:
    from torch import nn


def add_output_flags(p: argparse.ArgumentParser) -> None:
    # SUPPRESS keeps a subcommand's default from overwriting the same flag given before the subcommand
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print one JSON object on stdout")
    p.add_argument("--quiet", "-q", action="store_true", default=argparse.SUPPRESS, help="print nothing on success")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors")


def add_model_flags(p: argparse.ArgumentParser, what: str = "model") -> None:
    p.add_argument("model", metavar="MODEL", help=f"{what}: torchvision:NAME, timm:NAME, hf:DIR, file:DIR or module.path:factory")
    add_input_flags(p)
    add_trust_flag(p)


FORCE_HELP = ("replace DIR if it exists and is a directory secateurs wrote (its manifest.json, plan.json or "
              "sensitivity.json, and only files secateurs writes); any other existing DIR is refused (exit code 2)")
OUTPUT_HELP = "directory to write (must not exist unless --force; never the model's own source)"


def check_output(output: str, force: bool, model_spec: str | None) -> None:
    """Before any work: ``output`` can be written (new, or --force on a directory secateurs wrote; its folder
    writable) and is not, nor holds, a source the model spec reads."""
    from secateurs.io.atomic import check_target
    from secateurs.io.specs import check_not_source

    check_target(output, force)
    check_not_source(output, model_spec)


def add_trust_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-code", action="store_true",
                   help="allow a saved directory whose manifest names a module.path:factory to import and run it")


def trust_code(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "trust_code", False))


def add_input_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--input-shape", metavar="N,C,H,W", help="example input tensor shape, e.g. 1,3,224,224")
    g.add_argument("--seq-len", type=int, metavar="N", help="sequence length of token-id inputs for text models")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default 1)")


def is_json(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False))


def is_quiet(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "quiet", False))


def say(args: argparse.Namespace, text: str) -> None:
    """Human output on stdout, unless --json or --quiet."""
    if not is_json(args) and not is_quiet(args):
        print(text)


def step(args: argparse.Namespace, text: str) -> None:
    """Progress lines on stderr, so stdout stays clean for --json."""
    if not is_quiet(args):
        print(f"[secateurs] {text}", file=sys.stderr, flush=True)


def emit_json(args: argparse.Namespace, obj: Any) -> None:
    if is_json(args):
        print(json.dumps(obj, indent=1, default=str))


def set_threads(args: argparse.Namespace) -> None:
    import torch

    threads = getattr(args, "threads", 1)
    if threads is None or threads < 1:
        raise InvalidArgumentError(f"--threads must be a positive integer, got {threads}")
    torch.set_num_threads(threads)


def input_spec(args: argparse.Namespace, default: Any = None) -> Any:
    """The InputSpec from --input-shape / --seq-len, else ``default``; an error says what to pass."""
    from secateurs.io.inputs import InputSpec

    if getattr(args, "input_shape", None):
        return InputSpec.parse_shape(args.input_shape)
    if getattr(args, "seq_len", None) is not None:
        vocab = getattr(default, "vocab_size", 100) if default is not None else 100
        return InputSpec(seq_len=args.seq_len, vocab_size=vocab, constants=getattr(default, "constants", ()))
    if default is None:
        raise InvalidArgumentError("this model has no default input: pass --input-shape N,C,H,W (or --seq-len N for text models)")
    return default


def load_model(args: argparse.Namespace) -> tuple[Any, nn.Module, Any]:  # torch imported lazily: --help stays fast
    """(ModelSource, model, InputSpec) for the MODEL argument; the input spec is checked by one forward pass."""
    from secateurs.io.specs import resolve

    source = resolve(args.model, trust_code=trust_code(args))
    step(args, f"building {source.spec}")
    model = source.build()
    spec = input_spec(args, source.default_input)
    check_input(model, spec)
    return source, model, spec


def check_input(model: nn.Module, spec: Any) -> None:
    """Run the model once so a wrong --input-shape fails here with the shape in the message."""
    import torch

    from secateurs.graph.capture import normalize_inputs

    try:
        example = spec.make()
    except (RuntimeError, MemoryError) as exc:  # e.g. an --input-shape too large to allocate
        raise InvalidArgumentError(f"cannot build the example input ({spec.describe()}): "
                                   f"{str(exc).strip().splitlines()[0][:160]}; pass a smaller --input-shape / --seq-len") from None
    args, kwargs = normalize_inputs(example)
    try:
        with torch.inference_mode():
            model(*args, **kwargs)
    except (RuntimeError, ValueError, IndexError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidArgumentError(f"the model does not run on the example input ({spec.describe()}): {first}; "
                                   "pass the right --input-shape / --seq-len") from None
