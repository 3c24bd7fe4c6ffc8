"""``secateurs bench MODEL_OR_DIR``: measured latency (median of repeats) of a model, or before/after for a pruned DIR."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from secateurs.cli._common import (
    add_input_flags,
    add_output_flags,
    add_trust_flag,
    check_input,
    emit_json,
    input_spec,
    is_quiet,
    say,
    set_threads,
    step,
    trust_code,
)
from secateurs.cli._measure import add_latency_flags, batch_sizes, fit_static_batch, measure
from secateurs.cli.config import add_config_flags


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure latency; for a pruned directory, before and after")
    p.add_argument("model", metavar="MODEL_OR_DIR", help="a model spec, or a directory written by 'secateurs prune'")
    add_input_flags(p)
    add_trust_flag(p)
    add_latency_flags(p)
    add_config_flags(p, "bench", example="repeats=20")
    add_output_flags(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from secateurs.graph.counting import param_count
    from secateurs.io.saving import load, read_manifest, unpruned_factory
    from secateurs.io.specs import resolve

    set_threads(args)
    sizes = batch_sizes(args)
    spec_text = f"file:{args.model}" if Path(args.model).is_dir() else args.model
    source = resolve(spec_text, trust_code=trust_code(args))
    models = {}
    if source.saved_dir is not None:
        manifest = read_manifest(source.saved_dir)
        step(args, f"building the unpruned model {manifest['model_spec']}")
        models["before"] = unpruned_factory(source.saved_dir, manifest, trust_code=trust_code(args))()
        step(args, f"loading the pruned model from {source.saved_dir}")
        models["after"] = load(source.saved_dir, trust_code=trust_code(args))
    else:
        step(args, f"building {source.spec}")
        models["model"] = source.build()
    spec = input_spec(args, source.default_input)
    results: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for model in models.values():
        sizes, note = fit_static_batch(sizes, model, source.spec)
        notes += [note] if note else []
    for name, model in models.items():
        check_input(model, spec)
        step(args, f"timing {name} (batch {sizes}, median of {args.repeats})")
        results[name] = {"params": param_count(model),
                         "latency": [s.to_dict() for s in measure(model, spec, sizes, args.repeats, is_quiet(args)).values()]}
    info: dict[str, Any] = {"model": source.spec, "input": spec.to_dict(), "threads": torch.get_num_threads(), "torch_version": torch.__version__,
            "results": results, "notes": notes}
    if "before" in results:
        info["speedup"] = {str(b["batch"]): b["median_ms"] / a["median_ms"]
                           for b, a in zip(results["before"]["latency"], results["after"]["latency"], strict=True)}
    emit_json(args, info)
    for note in notes:
        say(args, f"note: {note}")
    say(args, f"{source.spec}, input {spec.describe()}, {torch.get_num_threads()} thread(s), median of {args.repeats}")
    for name, r in results.items():
        cells = ", ".join(f"batch {s['batch']}: {s['median_ms']:.2f} ms" for s in r["latency"])
        say(args, f"  {name:<6} {cells}")
    for batch, x in info.get("speedup", {}).items():
        say(args, f"  speedup at batch {batch}: {x:.2f}x")
    return 0

