"""``secateurs prune MODEL -o DIR``: plan, apply, verify, measure and save the model with its reports."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from secateurs.cli._calibration import add_calibration_flags, build_calibration, needs_data
from secateurs.cli._common import (
    FORCE_HELP,
    OUTPUT_HELP,
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
from secateurs.cli._config_flags import TARGET_FLAGS, add_prune_flags, build_config, config_options
from secateurs.cli._distill import add_distill_flags, check_distill, check_qat_inputs, distill, teacher_copy
from secateurs.cli._int8 import add_int8_flag, check_int8, int8_exports, qat_exports
from secateurs.cli._measure import add_latency_flags, batch_sizes, fit_static_batch, measure
from secateurs.cli._outofcore import add_outofcore_flag, run_out_of_core, wants_out_of_core
from secateurs.cli._overrides import add_overrides_flags, read_overrides
from secateurs.cli._sparsity import add_sparsity_flags, sparsify
from secateurs.cli.config import add_config_flags
from secateurs.config import AUTO, PruneConfig
from secateurs.errors import InvalidArgumentError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prune", help="prune a model and save it (safetensors + plan) with report.json/md/html")
    add_model_flags(p)
    p.add_argument("-o", "--output", required=True, metavar="DIR", help=OUTPUT_HELP)
    add_prune_flags(p)
    p.add_argument("--dry-run", action="store_true", help="only plan: write DIR/plan.json, leave weights alone")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    p.add_argument("--no-bench", action="store_true", help="skip the latency measurement")
    add_int8_flag(p, "also quantize a copy to int8 and put its fidelity and latency in the report: dynamic (default; "
                     "Linear layers) or static (convs and Linear, needs --calibration)")
    add_overrides_flags(p)
    add_calibration_flags(p)
    add_sparsity_flags(p)
    add_distill_flags(p)
    add_config_flags(p, "prune")
    add_latency_flags(p)
    add_outofcore_flag(p)
    add_output_flags(p)
    p.set_defaults(run=run)


def _uses_data(config: PruneConfig) -> bool:
    """Whether sc.prune reads the calibration batches: the criterion (``auto`` included), compensation, layer
    dropping or merging, or the rotation."""
    compensates = config.compensate is not None and (config.compensate != AUTO or config.importance == AUTO)
    return needs_data(config.importance) or compensates or config.removes_layers() or config.rotate


def _validate(args: argparse.Namespace, config: PruneConfig) -> None:
    """Check the request before building the model, so a typo fails in a second."""
    from secateurs.compensation.config import as_compensation
    from secateurs.depth.criteria import get_layer_criterion
    from secateurs.scoring.registry import criterion_name, get_criterion

    auto = isinstance(config.importance, str) and config.importance == AUTO  # resolved by sc.prune on the data
    criterion = get_criterion("l2" if auto else config.importance)
    name = criterion_name(criterion)
    if getattr(criterion, "needs_grads", False):
        raise InvalidArgumentError(f"importance {name!r} needs gradients of a training loss, which "
                                   "needs labels the command line cannot supply; use the Python API "
                                   "(secateurs.prune(..., calibration=loader, loss_fn=...)) or a data criterion such as wanda")
    if config.compensate is not None and config.compensate != AUTO:
        as_compensation(config.compensate)
    if config.layer_importance is not None:
        get_layer_criterion(config.layer_importance)
    for flag, n in (("--drop-layers", config.drop_layers), ("--merge-layers", config.merge_layers)):
        if n is not None and n < 1:
            raise InvalidArgumentError(f"{flag} must be a positive integer, got {n}")
    named = None if config.compensate == AUTO else config.compensate
    for flag, value in (("--compensate", named), ("--drop-layers", config.drop_layers),
                        ("--merge-layers", config.merge_layers), ("--rotate", config.rotate)):
        if value and not args.calibration:
            raise InvalidArgumentError(f"{flag} needs calibration data: pass --calibration DIR (images), FILE.txt "
                                       "(text) or synthetic (random inputs)")
    wants_data = getattr(criterion, "needs_data", False) or args.sparsity_2to4 == "wanda"
    if wants_data and not args.calibration:
        what = f"importance {name!r}" if getattr(criterion, "needs_data", False) else "--sparsity-2to4 wanda"
        raise InvalidArgumentError(f"{what} needs calibration data: pass --calibration DIR (images), FILE.txt (text) "
                                   "or synthetic (random inputs, meaningless scores)")
    if args.calibration_batches < 1:
        raise InvalidArgumentError(f"--calibration-batches must be a positive integer, got {args.calibration_batches}")
    if args.calibration:
        from secateurs.io.calibration_sources import source_kind

        source_kind(args.calibration)  # a missing path fails before the model is built
    check_int8(args)
    check_distill(args)


def _calibration(args: argparse.Namespace, source: Any, spec: Any, config: PruneConfig) -> Any:
    """The calibration batches for the criterion (None when it reads no data)."""
    if not args.calibration:
        return None
    step(args, f"loading calibration data ({args.calibration})")
    calibration = build_calibration(args, source.spec, spec)
    if not (_uses_data(config) or args.sparsity_2to4 == "wanda" or args.int8 == "static" or args.distill_steps):
        import warnings

        warnings.warn(f"--calibration is not used by importance {_name(config)!r}", stacklevel=2)
    return calibration


def _batches(args: argparse.Namespace, source: Any, spec: Any, config: PruneConfig) -> Any:
    calibration = _calibration(args, source, spec, config)
    return calibration.batches if calibration is not None and _uses_data(config) else None


def _name(config: PruneConfig) -> str:
    from secateurs.scoring.registry import criterion_name, get_criterion

    return criterion_name(get_criterion(config.importance))


def _dry_run(args: argparse.Namespace, model: Any, spec: Any, out: Path, config: PruneConfig, source: Any) -> int:
    import secateurs as sc
    from secateurs.io.atomic import atomic_dir, write_text

    step(args, "planning (dry run: the model is not changed)")
    calibration = _calibration(args, source, spec, config)
    batches = calibration.batches if calibration and (needs_data(config.importance) or config.removes_layers()
                                                      or config.rotate) else None
    plan = sc.plan(model, spec.make(), config, calibration=batches)
    with atomic_dir(out, args.force) as tmp:
        write_text(tmp / "plan.json", plan.to_json(indent=1))
    pruned = sum(1 for g in plan.groups if g.removed)
    emit_json(args, {"output": str(out), "plan": str(out / "plan.json"), "dry_run": True, "groups": len(plan.groups),
                     "groups_pruned": pruned, "units_removed": plan.removed_units()})
    say(args, f"dry run: {pruned} of {len(plan.groups)} groups would lose {plan.removed_units()} units; "
              f"plan written to {out / 'plan.json'}")
    return 0


def _request(args: argparse.Namespace) -> tuple[PruneConfig, Any]:
    """The PruneConfig and the sensitivity section of the report, checked before anything is built."""
    options = config_options(args)
    overrides, sensitivity_doc = read_overrides(args)
    if overrides:
        options["overrides"] = overrides
        if not any(k in options for k in TARGET_FLAGS):
            options["ratio"] = 0.0  # only the groups the overrides name are pruned
    config = build_config(options)
    _validate(args, config)
    return config, sensitivity_doc


def run(args: argparse.Namespace) -> int:
    import secateurs as sc
    from secateurs.graph.analysis import fingerprint
    from secateurs.reporting import build_report
    from secateurs.reporting.document import latency_rows

    set_threads(args)
    out = Path(args.output)
    check_output(args.output, args.force, args.model)  # fail before any slow work
    config, sensitivity_doc = _request(args)
    if wants_out_of_core(args):
        return run_out_of_core(args, config, lambda source, spec: _batches(args, source, spec, config))
    sizes = [] if args.no_bench or args.dry_run else batch_sizes(args)
    source, model, spec = load_model(args)
    check_qat_inputs(args, spec.make())
    if args.dry_run:
        return _dry_run(args, model, spec, out, config, source)
    base_fp = fingerprint(model)
    sizes, batch_note = fit_static_batch(sizes, model, source.spec)
    calibration = _calibration(args, source, spec, config)
    batches = calibration.batches if calibration else None
    before = {}
    if sizes:
        step(args, f"measuring latency before pruning (batch {sizes}, median of {args.repeats})")
        before = measure(model, spec, sizes, args.repeats, is_quiet(args))
    step(args, "planning, pruning and verifying")
    x = spec.make()
    teacher = teacher_copy(args, model)
    result = sc.prune(model, x, config, calibration=batches if _uses_data(config) else None)
    distilled = None
    if teacher is not None:
        step(args, f"distilling from the unpruned model ({args.distill_steps} steps, {args.distill_loss})")
        distilled = distill(args, model, teacher, list(batches or []))
        del teacher
    sparsity, sparsity_doc = None, None
    if args.sparsity_2to4:
        step(args, f"2:4 sparsity of Linear weights ({args.sparsity_2to4})")
        sparsity, sparsity_doc = sparsify(args, model, x, batches if args.sparsity_2to4 == "wanda" else None)
    after = {}
    if sizes:
        step(args, "measuring latency after pruning")
        after = measure(model, spec, sizes, args.repeats, is_quiet(args))
    doc = build_report(result, model_spec=source.spec, input_desc=spec.to_dict(), latency=latency_rows(before, after))
    doc["notes"].extend([batch_note] if batch_note else [])
    for key, value in (("sensitivity", sensitivity_doc), ("sparsity", sparsity_doc), ("distillation", distilled)):
        if value is not None:
            doc[key] = value
    if calibration is not None:
        doc["calibration"] = calibration.to_dict()
        doc["notes"].extend(calibration.notes)
    qmodel = None
    if args.qat:  # checked before the work: --distill-steps ran with fake quantization, no --int8
        int8_doc, qmodel = qat_exports(args, model, x)
        doc["exports"].update(int8_doc)
    elif args.int8:
        try:
            int8_doc, qmodel = int8_exports(args, model, x, batches)
            doc["exports"].update(int8_doc)
        except InvalidArgumentError as exc:  # e.g. no Linear layer: the pruning itself is still worth saving
            doc["notes"].append(f"int8 {args.int8} skipped: {exc}")
    files = _write(args, out, model, result, doc, source, spec, x, base_fp, sparsity, qmodel)
    _tell(args, out, result, doc, sparsity, files)
    return 0


def _write(args: argparse.Namespace, out: Path, model: Any, result: Any, doc: dict[str, Any], source: Any, spec: Any,
           x: Any, base_fp: str, sparsity: Any, qmodel: Any) -> list[str]:
    """Save the directory (weights, plan, manifest, reports, extras) atomically; returns the extra file names."""
    import secateurs as sc
    from secateurs.reporting import render_html, render_markdown

    step(args, f"writing {out}")
    files: dict[str, str | bytes] = {"report.json": json.dumps(doc, indent=1), "report.md": render_markdown(doc),
                                     "report.html": render_html(doc)}
    if source.kind == "program":  # the pruned program, deployable without secateurs
        from secateurs.io.program import program_bytes

        step(args, "exporting the pruned program (model.pt2)")
        files["model.pt2"] = program_bytes(model, x)
    sc.save(model, result.plan, out, overwrite=args.force, model_spec=source.spec, input_spec=spec,
            unpruned_fingerprint=base_fp, extra_files=files, sparsity=sparsity, int8=qmodel)
    return [name for name in ("model.pt2",) if name in files] + (["model.int8.safetensors"] if qmodel is not None else [])


def _tell(args: argparse.Namespace, out: Path, result: Any, doc: dict[str, Any], sparsity: Any, extras: list[str]) -> None:
    emit_json(args, {"output": str(out), **doc})
    say(args, result.summary())
    if sparsity is not None:
        say(args, sparsity.summary())
    for row in doc["latency"]:
        say(args, f"latency batch {row['batch']}: {row['before']['median_ms']:.2f} ms -> {row['after']['median_ms']:.2f} ms "
                  f"({row['speedup']:.2f}x; MAC ideal {doc['mac_ideal_speedup']:.2f}x)")
    for note in doc["notes"]:
        if "fixed shapes" in note:
            say(args, f"note: {note}")
    more = "".join(f", {name}" for name in extras)
    say(args, f"saved to {out} (model.safetensors, plan.json, manifest.json{more}, report.json/md/html)")
