"""``secateurs sensitivity MODEL -o DIR``: prune each group alone at several ratios; table, plot, overrides.

Without data the metric is output fidelity: the cosine similarity of the pruned copy's outputs with the
unpruned model's on random example inputs. It shows which groups change the function most, not what
they cost in accuracy; use ``secateurs.sensitivity(..., metric_fn=...)`` from Python for a real metric.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from secateurs.cli._common import (
    FORCE_HELP,
    add_model_flags,
    add_output_flags,
    check_output,
    emit_json,
    is_quiet,
    load_model,
    say,
    set_threads,
    step,
)
from secateurs.errors import InvalidArgumentError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sensitivity", help="prune each group alone at several ratios and measure output fidelity")
    add_model_flags(p)
    p.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="directory to write sensitivity.md/json/png and overrides.json (must not exist unless --force; "
                        "never the model's own source)")
    p.add_argument("--ratios", default="0.1,0.3,0.5,0.7,0.9", metavar="R1,R2",
                   help="fractions of each group's units removed (default 0.1,0.3,0.5,0.7,0.9)")
    p.add_argument("--importance", default="l2", help="criterion ranking the units of each group (default l2)")
    p.add_argument("--groups", action="append", default=[], metavar="PATTERN",
                   help="prune the groups touching this module pattern together, one row per pattern (repeatable); "
                        "default: one row per group")
    p.add_argument("--ignore", action="append", default=[], metavar="PATTERN", help="module path or glob never pruned")
    p.add_argument("--max-drop", type=float, default=0.01,
                   help="fidelity loss allowed per group for overrides.json (default 0.01)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    add_output_flags(p)
    p.set_defaults(run=run)


def _ratios(text: str) -> list[float]:
    try:
        return [float(r) for r in str(text).split(",") if r.strip()]
    except ValueError:
        raise InvalidArgumentError(f"--ratios must be numbers like 0.1,0.5,0.9, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    import secateurs as sc
    from secateurs.io.atomic import atomic_dir, write_bytes, write_text
    from secateurs.planning.sensitivity import FIDELITY

    set_threads(args)
    out = Path(args.output)
    check_output(args.output, args.force, args.model)
    ratios = _ratios(args.ratios)
    if not args.max_drop >= 0:  # NaN too
        raise InvalidArgumentError(f"--max-drop must be >= 0, got {args.max_drop}")
    source, model, spec = load_model(args)
    x = spec.make()
    step(args, f"sensitivity: each group alone at ratios {ratios}; metric: output fidelity on random inputs")
    result = sc.sensitivity(model, x, ratios=ratios, importance=args.importance, groups=args.groups or None,
                            ignore=args.ignore or None, seed=args.seed, progress=not is_quiet(args))
    overrides = result.overrides(max_drop=args.max_drop)
    doc = {"model": source.spec, "input": spec.to_dict(), **result.to_dict()}
    with atomic_dir(out, args.force) as tmp:
        write_text(tmp / "sensitivity.json", json.dumps(doc, indent=1))
        write_text(tmp / "sensitivity.md", f"# Sensitivity of {source.spec}\n\n{result.to_markdown()}")
        write_bytes(tmp / "sensitivity.png", result.plot())
        write_text(tmp / "overrides.json", json.dumps(overrides, indent=1))
    emit_json(args, {"output": str(out), "overrides": overrides, **doc})
    worst = sorted(result.keys(), key=lambda k: -max(r.drop for r in result.curve(k)))[:5]
    say(args, f"metric: {FIDELITY}; random inputs {spec.describe()}, no labels: this ranks groups by how much "
              "they change the outputs, not by accuracy")
    say(args, f"{len(result.keys())} groups x {len(ratios)} ratios; most sensitive: "
              + ", ".join(f"{result.curve(k)[0].name} (drop {max(r.drop for r in result.curve(k)):.3g})" for k in worst))
    say(args, f"overrides.json: per-group ratios losing at most {args.max_drop:g} fidelity alone; "
              f"use sc.plan(model, x, ratio=0.0, overrides=json.load(open('{out / 'overrides.json'}')))")
    say(args, f"written to {out} (sensitivity.md, sensitivity.json, sensitivity.png, overrides.json)")
    return 0
