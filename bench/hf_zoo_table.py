"""Every transformers model type that builds from a tiny config: prune heads+FFN with defaults, verify, stock reload.

Usage::

    PYTHONPATH=. python bench/hf_zoo_table.py                  # every type (hours on 2 cores), rewrite the table
    PYTHONPATH=. python bench/hf_zoo_table.py llama bert        # just these, print JSON lines
    PYTHONPATH=. python bench/hf_zoo_table.py --missing -j 2    # types without a cached result, 2 workers
    PYTHONPATH=. python bench/hf_zoo_table.py --table-only      # rewrite the table from the cache
    PYTHONPATH=. python bench/hf_zoo_table.py --ffn-only -j 2   # also FFN-only (bench/results/hf_zoo_ffn)

Each type runs ``secateurs.testing.hf_zoo.check_type`` in a worker process (a crash or a hang costs one type,
``--timeout`` seconds each); results are cached in ``bench/results/hf_zoo/<type>.json``. The table is the
section between the ``transformers-zoo`` markers of ``docs/zoo.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from zoo_cache import load  # type: ignore[import-not-found]  # bench/, beside this script

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / "results" / "hf_zoo"
FFN_CACHE = ROOT / "bench" / "results" / "hf_zoo_ffn"  # ratio={"ffn": 0.3} alone: what config discovery covers
DOC = ROOT / "docs" / "zoo.md"
START, END = "<!-- transformers-zoo -->", "<!-- /transformers-zoo -->"


class _Timeout(Exception):
    pass


def _alarm(*_: Any) -> None:
    raise _Timeout()


def worker(types: list[str], timeout: int, cache: Path, ffn_only: bool) -> None:
    """Run each type, write its cache file; a type that runs past ``timeout`` seconds is recorded as such."""
    import warnings

    import torch

    from secateurs.testing.hf_zoo import TypeResult, check_type

    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    signal.signal(signal.SIGALRM, _alarm)
    for t in types:
        signal.alarm(timeout)
        try:
            row = (check_type(t, {"ffn": 0.3}, moe_checks=False) if ffn_only else check_type(t)).to_dict()
        except _Timeout:
            row = TypeResult(t, skip_reason=f"timeout: more than {timeout} s").to_dict()
        finally:
            signal.alarm(0)
        (cache / f"{t}.json").write_text(json.dumps(row, indent=1))
        print(json.dumps(summary(row)), flush=True)


def run(types: list[str], jobs: int, timeout: int, cache: Path, ffn_only: bool) -> None:
    """Workers over ``types``; a worker that dies has crashed on the first type of its share without a result."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    flags = ["--worker", "--timeout", str(timeout), *(["--ffn-only"] if ffn_only else [])]
    pending = list(types)
    while pending:
        shares = [pending[i::jobs] for i in range(jobs) if pending[i::jobs]]
        procs = [subprocess.Popen([sys.executable, __file__, *flags, *s], env=env) for s in shares]
        for proc, share in zip(procs, shares, strict=True):
            proc.wait()
            left = [t for t in share if not (cache / f"{t}.json").exists()]
            if left:
                (cache / f"{left[0]}.json").write_text(json.dumps(
                    {"model_type": left[0], "built": False, "skip_reason": f"worker crashed (exit {proc.returncode})"}))
        pending = [t for t in pending if not (cache / f"{t}.json").exists()]


def summary(row: dict[str, Any]) -> dict[str, Any]:
    first = (row.get("attempts") or [{}])[0]
    return {"type": row["model_type"], "status": status(row), "reload": first.get("reload", ""),
            "reason": (row.get("skip_reason") or first.get("reason") or first.get("stock_config") or "")[:160]}


def status(row: dict[str, Any]) -> str:
    if not row.get("built"):
        return "skipped"
    return str((row.get("attempts") or [{}])[0].get("status", "error"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("types", nargs="*")
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--missing", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("-j", "--jobs", type=int, default=1)
    parser.add_argument("--timeout", type=int, default=300)
    parser.add_argument("--ffn-only", action="store_true", help='ratio={"ffn": 0.3} alone, cached apart')
    args = parser.parse_args(argv)
    cache = FFN_CACHE if args.ffn_only else CACHE
    cache.mkdir(parents=True, exist_ok=True)
    if args.worker:
        worker(args.types, args.timeout, cache, args.ffn_only)
        return 0
    from secateurs.testing.hf_tiny import model_types

    names = model_types()
    todo = [] if args.table_only else (args.types or names)
    if args.missing:
        todo = [t for t in todo if not (cache / f"{t}.json").exists()]
    if args.ffn_only:  # types the main pass could not build are not tried again
        main_results = load(CACHE, todo)
        todo = [t for t in todo if main_results.get(t, {}).get("built", True)]
    if todo:
        run(todo, args.jobs, args.timeout, cache, args.ffn_only)
    if not args.types:
        from hf_zoo_render import render  # type: ignore[import-not-found]

        write_section(render(names, load(CACHE, names), load(FFN_CACHE, names)))
    return 0


def write_section(text: str) -> None:
    """Replace the marked transformers section of docs/zoo.md (appended when absent)."""
    doc = DOC.read_text() if DOC.exists() else ""
    block = f"{START}\n{text.rstrip()}\n{END}\n"
    if START in doc and END in doc:
        doc = doc[: doc.index(START)] + block + doc[doc.index(END) + len(END) + 1:]
    else:
        doc = doc.rstrip() + "\n\n" + block
    DOC.write_text(doc)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
