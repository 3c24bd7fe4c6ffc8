"""Entry point: dispatch to one subcommand module; ``main()`` returns an exit code."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings
from collections.abc import Sequence

from secateurs.cli.commands import SUBCOMMANDS
from secateurs.cli.config import apply_config
from secateurs.errors import SecateursError

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="secateurs", description="Structured pruning for PyTorch models.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--quiet", "-q", action="store_true", help="print nothing on success")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS.values():
        importlib.import_module(f"secateurs.cli.{module}").add_parser(sub)
    return parser


def _show_warnings(caught: list[warnings.WarningMessage]) -> None:
    """Show secateurs' own warnings as one line each; third-party deprecation noise stays hidden."""
    seen = set()
    for w in caught:
        ours = str(w.filename).startswith(_PACKAGE_DIR) and issubclass(w.category, UserWarning)
        if ours and str(w.message) not in seen:
            seen.add(str(w.message))
            print(f"warning: {w.message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    # third-party libraries (onnxruntime) log advice on the root logger; keep stderr to our own lines
    logging.basicConfig(level=logging.DEBUG if debug else logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            apply_config(args, argv)  # --config FILE / --set key=value of subcommands that take them
            return int(args.run(args))
        except SecateursError as exc:
            if debug:
                raise
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except Exception as exc:
            if debug:
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            print(f"error: unexpected {type(exc).__name__}: {first} (rerun with --debug for the traceback)", file=sys.stderr)
            return 1
        finally:
            _show_warnings(caught)


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
