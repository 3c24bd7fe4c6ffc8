"""The per-model result cache the zoo benches share: one JSON file per model, reported as it is written."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def record(cache: Path, key: str, row: dict[str, Any]) -> None:
    """Write ``row`` as ``cache/<key>.json`` and print it (its traceback, if any, to stderr)."""
    (cache / f"{key}.json").write_text(json.dumps(row, indent=1))
    print(json.dumps({k: v for k, v in row.items() if k != "trace"}), flush=True)
    if row.get("trace"):
        print(row["trace"], file=sys.stderr, flush=True)


def load(cache: Path, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The cached rows of ``names`` that have one."""
    return {n: json.loads((cache / f"{n}.json").read_text()) for n in names if (cache / f"{n}.json").exists()}
