"""Entry point: dispatch to one subcommand module; ``main()`` returns an exit code."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from secateurs.errors import SecateursError

SUBCOMMANDS = ("demo",)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="secateurs", description="Structured pruning for PyTorch models.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"secateurs.cli.{name}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except SecateursError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    sys.exit(main())
