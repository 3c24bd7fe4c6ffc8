"""``--overrides FILE`` and ``--sensitivity DIR`` for ``prune``: per-group ratios, and the scan behind them.

``--sensitivity DIR`` takes the directory ``secateurs sensitivity`` wrote: its ``overrides.json`` becomes the
plan's per-group ratios (unless ``--overrides`` names another file) and its curves go into the report,
so the report shows why each group was pruned as far as it was.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from secateurs.errors import FileFormatError, InvalidArgumentError


def add_overrides_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overrides", dest="group_overrides", metavar="FILE.json", default=None,
                   help="per-group ratios as JSON {pattern or group:NAME: ratio}, on top of --ratio")
    p.add_argument("--sensitivity", metavar="DIR", default=None,
                   help="a directory written by `secateurs sensitivity`: prune with its overrides.json (groups it "
                        "does not name keep --ratio, default 0) and put its curves in the report")


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise InvalidArgumentError(f"{what} {str(path)!r} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise FileFormatError(f"{what} {str(path)!r} is not valid JSON: {str(exc)[:200]}") from None


def read_overrides(args: argparse.Namespace) -> tuple[dict[str, float] | None, dict[str, Any] | None]:
    """(overrides for the plan or None, the sensitivity section of the report or None); checked, nothing built."""
    sensitivity = None
    overrides_path = Path(args.group_overrides) if args.group_overrides else None
    if args.sensitivity:
        from secateurs.planning.sensitivity_result import SensitivityResult

        root = Path(args.sensitivity)
        if not root.is_dir():
            raise InvalidArgumentError(f"--sensitivity {str(root)!r} is not a directory written by `secateurs sensitivity`")
        doc = _read_json(root / "sensitivity.json", "sensitivity result")
        SensitivityResult.from_dict(doc)  # a malformed table fails here, not when the report renders
        sensitivity = {"source": str(root.absolute()), "model": doc.get("model"), "result": doc}
        overrides_path = overrides_path or root / "overrides.json"
    if overrides_path is None:
        return None, sensitivity
    raw = _read_json(overrides_path, "overrides file")
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
                                            for k, v in raw.items()):
        raise FileFormatError(f"overrides file {str(overrides_path)!r} must map patterns to ratios, e.g. "
                              '{"layer3.*": 0.5, "group:fc1.weight[dim 0]": 0.2}')
    if sensitivity is not None:
        sensitivity["overrides"] = {k: float(v) for k, v in raw.items()}
    return {k: float(v) for k, v in raw.items()}, sensitivity
