"""Prune the smallest model of every timm architecture family at ratio 0.3 and write the timm section of docs/zoo.md.

Usage::

    PYTHONPATH=. python bench/zoo_timm.py                    # every family, rewrite the timm section of docs/zoo.md
    PYTHONPATH=. python bench/zoo_timm.py cait swin_transformer   # just these families, print JSON lines
    PYTHONPATH=. python bench/zoo_timm.py --table-only       # rebuild the section from the cached results

A family is an entry module of timm's registry (``timm.list_modules()``); its smallest registered model (fewest
parameters) is built with random weights by ``secateurs.testing.timm_zoo.build`` and pruned with
``secateurs.prune(model, x, ratio=0.3)``. Each family runs in its own process with a time limit, so one that
hangs or runs out of memory is recorded as such. Results are cached per family in
``bench/results/zoo_timm/<family>.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from zoo_cache import load, record  # type: ignore[import-not-found]  # bench/, beside this script

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / "results" / "zoo_timm"
DOC = ROOT / "docs" / "zoo.md"
BEGIN, END = "<!-- timm zoo: begin (bench/zoo_timm.py) -->", "<!-- timm zoo: end -->"
# Families not run on the 2-core, 23 GB machine the table was made on: the smallest registered model is too big to
# prune (plan, apply, verify against the masked original) in the time limit. Recorded in the table as skipped.
TOO_BIG: dict[str, str] = {}
SELECTION = CACHE / "_smallest.json"  # family -> its smallest model (counting every variant takes minutes)


def run_one(family: str, name: str, ratio: float = 0.3) -> dict[str, Any]:
    import torch

    import secateurs as sc
    from secateurs.errors import SecateursError
    from secateurs.testing import timm_zoo

    torch.set_num_threads(1)
    row: dict[str, Any] = {"family": family, "model": name}
    model, x = timm_zoo.build(name)
    row.update(input=int(x.shape[-1]), params=sum(p.numel() for p in model.parameters()))
    t0 = time.perf_counter()
    try:
        report = sc.prune(model, x, ratio=ratio)
    except SecateursError as exc:
        return row | {"status": "refused", "reason": f"{type(exc).__name__}: {str(exc).splitlines()[0]}",
                      "seconds": round(time.perf_counter() - t0, 1)}
    except Exception as exc:  # a bug, not a refusal: record it loudly
        return row | {"status": "error", "reason": f"{type(exc).__name__}: {exc}",
                      "trace": traceback.format_exc(limit=-4), "seconds": round(time.perf_counter() - t0, 1)}
    seconds = round(time.perf_counter() - t0, 1)
    v = report.verification
    plan = report.plan
    ok = v is not None and v.ok and plan.removed_units() > 0
    fresh, _ = timm_zoo.build(name)  # the plan replayed from its JSON on a fresh copy gives the same model
    sc.apply(fresh, sc.Plan.from_json(plan.to_json()))
    with torch.no_grad():
        replayed = bool(torch.equal(fresh(x), model(x)))
    return row | {
        "status": v.mode if ok and v else "failed",  # exact, partial or structural
        "mode": v.mode if v else None,
        "rel_error": v.rel_error if v else None,
        "groups": len(plan.groups),
        "groups_pruned": sum(1 for g in plan.groups if g.removed),
        "heads": [sum(1 for g in plan.groups if g.kind == "heads" and g.removed),
                  sum(1 for g in plan.groups if g.kind == "heads")],
        "attributes": sum(len(a) for a in getattr(plan, "attributes", {}).values()),
        "params_kept": report.params_after / report.params_before,
        "macs_kept": report.macs_ratio,
        "replayed": replayed,
        "float64": bool(v is not None and "in float64" in v.message),
        "left_out": sum(int(m.group(1)) for n in plan.settings.get("notes", [])
                        if (m := re.match(r"left out (\d+) group", n))),
        "reason": "" if ok else (v.message if v else "no verification"),
        "seconds": seconds,
    }


def run_isolated(family: str, name: str, timeout: float) -> dict[str, Any]:
    """``run_one`` in a child process (a hang, a crash or running out of memory becomes a row, not a dead run)."""
    cmd = [sys.executable, __file__, "--one", family, name]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"family": family, "model": name, "status": "timeout", "reason": f"no result within {timeout:.0f} s",
                "seconds": round(time.perf_counter() - t0, 1)}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"family": family, "model": name, "status": "error", "reason": f"worker exited {proc.returncode}: {tail}",
                "seconds": round(time.perf_counter() - t0, 1)}
    return dict(json.loads(lines[-1]))


_VERIFIED = ("exact", "partial", "structural")


def _notes(r: dict[str, Any]) -> str:
    notes = []
    if r.get("heads") and r["heads"][1]:
        notes.append(f"heads pruned in {r['heads'][0]} of {r['heads'][1]} attention groups")
    if r.get("attributes"):
        notes.append(f"{r['attributes']} attributes rewritten")
    if r.get("float64"):
        notes.append("float32 rounding above 1e-4, exact in float64")
    if r.get("left_out"):
        notes.append(f"{r['left_out']} groups left out")
    if r.get("replayed") is False:
        notes.append("**plan replayed from JSON on a fresh copy differs**")
    return "; ".join(notes)


def section(families: list[str], results: dict[str, dict[str, Any]]) -> str:
    rows = [results.get(f, {"family": f, "status": "not run"}) for f in families]
    passed = sum(1 for r in rows if r.get("status") in _VERIFIED)
    skipped = sum(1 for r in rows if r.get("status") == "skipped")
    counts = {s: sum(1 for r in rows if r.get("status") == s) for s in (*_VERIFIED, "refused", "failed", "error",
                                                                        "timeout", "skipped", "not run")}
    lines = [
        BEGIN,
        "# timm architecture families",
        "",
        "Generated by `bench/zoo_timm.py` (do not edit by hand): one model per entry module of timm's registry",
        "(`timm.list_modules()`), the family's smallest registered model (fewest parameters), random weights",
        "(`secateurs.testing.timm_zoo.build`: zero weight matrices randomised, BatchNorm statistics from one random",
        "batch), eval mode, input 1x3xSxS at the smallest size the model runs at (models with a fixed input size are",
        "built with `img_size=S`), `secateurs.prune(model, x, ratio=0.3)` with every other option at its default.",
        "Each plan is also replayed from its JSON on a fresh copy of the model, which must give the same outputs.",
        "`tests/zoo/test_timm_zoo.py` checks the same (`-m slow` for every family). Times are wall-clock seconds for",
        "`prune` on a shared, loaded 2-core machine, one thread: indicative only.",
        "Verification: *exact*, the pruned model equals the original with the removed units zeroed (compared again",
        "in float64 where float32 rounding alone exceeds 1e-4: noted); *partial*, the",
        "groups that can be checked that way are (on a copy), the ones feeding a normalisation over the pruned",
        "dimension (LayerNorm, softmax, batch statistics) structurally; *structural*, runs, keeps output shapes,",
        "re-exports. *left out* counts groups planning left alone because no attribute rewrite follows their pruning",
        "(`docs/binding.md`); *heads* counts attention head groups pruned / found.",
        "",
        f"**{passed} of {len(rows)} families pruned and verified** ({passed / max(1, len(rows) - skipped):.0%} of "
        f"the {len(rows) - skipped} run); " + ", ".join(f"{n} {s}" for s, n in counts.items() if n) + ".",
        "",
        "| family | model | input | params | verification | groups pruned | params kept | MACs kept | seconds | notes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        params = f"{r['params'] / 1e6:.1f}M" if "params" in r else "-"
        if r.get("status") in _VERIFIED:
            lines.append(f"| {r['family']} | {r['model']} | {r['input']} | {params} | {r['status']} | "
                         f"{r['groups_pruned']} of {r['groups']} | {r['params_kept']:.1%} | {r['macs_kept']:.1%} | "
                         f"{r['seconds']} | {_notes(r)} |")
        else:
            reason = str(r.get("reason", "")).replace("|", "\\|").splitlines()[0][:220] if r.get("reason") else ""
            lines.append(f"| {r['family']} | {r.get('model', '-')} | {r.get('input', '-')} | {params} | "
                         f"{r.get('status')} | - | - | - | {r.get('seconds', '-')} | {reason} |")
    lines.append(END)
    return "\n".join(lines) + "\n"


def write_section(text: str) -> None:
    doc = DOC.read_text() if DOC.exists() else ""
    if BEGIN in doc and END in doc:
        head, rest = doc.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        doc = head + text + tail
    else:
        doc = doc.rstrip("\n") + "\n\n" + text
    DOC.write_text(doc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("families", nargs="*")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--table-only", action="store_true", help="rebuild the docs/zoo.md section from the cache")
    parser.add_argument("--missing", action="store_true", help="run only families without a cached result")
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds per family")
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(*args.one)), flush=True)
        return 0
    from secateurs.testing import timm_zoo

    names = timm_zoo.families()
    CACHE.mkdir(parents=True, exist_ok=True)
    todo = [] if args.table_only else (args.families or names)
    if args.missing:
        todo = [f for f in todo if not (CACHE / f"{f}.json").exists()]
    selection = json.loads(SELECTION.read_text()) if SELECTION.exists() else {}
    for family in todo:
        if family not in selection:
            selection[family] = timm_zoo.smallest(family)
            SELECTION.write_text(json.dumps(selection, indent=1, sort_keys=True))
        name = selection[family]
        row = ({"family": family, "model": name, "status": "skipped", "reason": TOO_BIG[family]} if family in TOO_BIG
               else run_isolated(family, name, args.timeout))
        record(CACHE, family, row)
    if not args.families:
        write_section(section(names, load(CACHE, names)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
