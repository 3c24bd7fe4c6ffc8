"""``secateurs report DIR``: show the report of a pruned directory (or the plan of a dry run)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from secateurs.cli._common import add_output_flags, emit_json, say
from secateurs.errors import FileFormatError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="show the report of a directory written by 'secateurs prune'")
    p.add_argument("directory", metavar="DIR")
    p.add_argument("--markdown", action="store_true", help="print the full Markdown report")
    p.add_argument("--rewrite", action="store_true", help="regenerate report.md and report.html from report.json")
    add_output_flags(p)
    p.set_defaults(run=run)


def read_report(root: Path) -> dict[str, Any]:
    path = root / "report.json"
    try:
        doc = json.loads(path.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FileFormatError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != "secateurs-report":
        raise FileFormatError(f"{path} is not a secateurs report")
    return doc


def write_reports(root: Path, doc: dict[str, Any]) -> None:
    """Rewrite report.json/md/html in place, each file replaced atomically."""
    from secateurs.io.atomic import replace_file
    from secateurs.reporting import render_html, render_markdown

    replace_file(root / "report.json", json.dumps(doc, indent=1).encode())
    replace_file(root / "report.md", render_markdown(doc).encode())
    replace_file(root / "report.html", render_html(doc).encode())
    from secateurs.io.saving import record_files

    record_files(root, ["report.json", "report.md", "report.html"])


def _plan_only(args: argparse.Namespace, root: Path) -> int:
    from secateurs.plans import Plan

    plan = Plan.from_json((root / "plan.json").read_text("utf-8"))
    pruned = [g for g in plan.groups if g.removed]
    info = {"directory": str(root), "dry_run": True, "groups": len(plan.groups), "groups_pruned": len(pruned),
            "units_removed": plan.removed_units(), "settings": plan.settings}
    emit_json(args, info)
    say(args, f"plan only (dry run): {len(pruned)} of {len(plan.groups)} groups lose {plan.removed_units()} units")
    for g in pruned[:40]:
        say(args, f"  [{g.id:3d}] {g.kind:<9} {g.n_units - len(g.removed):5d}/{g.n_units:<5d} kept  {g.name}")
    return 0


def run(args: argparse.Namespace) -> int:
    from secateurs.reporting.render import render_markdown, summary_rows

    root = Path(args.directory)
    if not root.is_dir():
        raise FileFormatError(f"{str(root)!r} is not a directory")
    if not (root / "report.json").is_file():
        if (root / "plan.json").is_file():
            return _plan_only(args, root)
        raise FileFormatError(f"{root} has neither report.json nor plan.json: not written by 'secateurs prune'")
    doc = read_report(root)
    if args.rewrite:
        write_reports(root, doc)
    emit_json(args, doc)
    if args.markdown:
        say(args, render_markdown(doc))
        return 0
    say(args, f"{doc['model'].get('spec') or doc['model']['class']}  (secateurs {doc['library_version']})")
    for q, b, a, k in summary_rows(doc):
        say(args, f"  {q:<55} {b:>10} -> {a:>10}  {k}")
    v = doc.get("verification")
    if v:
        say(args, f"  verification: {'passed' if v['ok'] else 'FAILED'} ({v['message']})")
    say(args, f"  full report: {root / 'report.html'}")
    return 0
