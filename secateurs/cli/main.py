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
from secateurs.progress import set_progress

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


def _warning_printer() -> object:
    """``warnings.showwarning`` that prints secateurs' own warnings at once (so a note about the request comes
    before the slow work), one line each and each once; third-party deprecation noise stays hidden."""
    seen: set[str] = set()

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: object = None,
             line: str | None = None) -> None:
        ours = str(filename).startswith(_PACKAGE_DIR) and issubclass(category, UserWarning)
        if ours and str(message) not in seen:
            seen.add(str(message))
            print(f"warning: {message}", file=sys.stderr, flush=True)

    return show


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    # third-party libraries (onnxruntime) log advice on the root logger; keep stderr to our own lines
    logging.basicConfig(level=logging.DEBUG if debug else logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "quiet", False) or getattr(args, "json", False):
        set_progress(False)  # no bars either
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = _warning_printer()  # type: ignore[assignment]
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
            set_progress(None)


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
