"""Verification: the pruned model equals the original with removed units zeroed (where exact).

The reference is the *masked original*: the unpruned model with every removed slice zeroed in place (and
restored after), dropped blocks run as identity. It is run on the example inputs and, when the batch dimension
is free, on a second batch size (one more sample); the pruned model runs on the same inputs. Every output leaf
is compared (``outputs.py``): floats per output and per column with their dtype's tolerance, integers and bools
exactly, dtypes and shapes always. What the runs cannot see (training mode, shape branches) becomes a note.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from secateurs.errors import InvalidArgumentError, InvalidTypeError, VerificationError
from secateurs.graph.capture import ExampleInputs, eval_mode, export_model, model_inputs
from secateurs.planning.attributes import describe_unbound
from secateurs.plans import Plan
from secateurs.surgery.spill import SPILL_BYTES, SliceStore
from secateurs.verification import precision
from secateurs.verification.behaviour import OpTrace, failing_module, first_difference, training_note
from secateurs.verification.inputs import batch_size, check_example_inputs, resized_batch
from secateurs.verification.outputs import (
    OutputCheck,
    check_outputs,
    default_tolerance,
    is_float,
    layout_difference,
    named_leaves,
)

__all__ = ["Reference", "VerifyResult", "combine", "compare", "default_tolerance", "has_weights", "masked",
           "masked_outputs", "recheck_in_float64", "reference_outputs", "run", "verify", "verify_exact_subset"]


@dataclass
class VerifyResult:
    ok: bool
    mode: str  # "exact": compared with the masked original; "structural": runs, shapes, re-export;
    # "partial": exact groups compared numerically on a copy, the rest structurally
    max_abs_error: float | None
    rel_error: float | None  # the largest per-output (per-column) relative error
    tolerance: float
    shapes_ok: bool
    reexported: bool | None
    message: str
    notes: list[str] = field(default_factory=list)  # what the runs could not check (training mode, shape branches)
    batch_sizes: tuple[int, ...] = ()  # batch sizes both models ran at

    def raise_if_failed(self) -> None:
        if not self.ok:
            raise VerificationError(self.message)


@dataclass
class Run:
    """The masked original's outputs on one set of inputs, and the ops it ran there."""

    label: str  # "batch size 2"
    inputs: ExampleInputs
    outputs: dict[str, torch.Tensor]
    ops: list[str] = field(default_factory=list)
    batch: int | None = None


@dataclass
class Reference:
    """What the pruned model is compared with: one run per batch size, and notes on what was not checked."""

    runs: list[Run]
    notes: list[str] = field(default_factory=list)
    positional: bool = False  # built from a plain list of outputs: compare by position, not by name

    @staticmethod
    def of(outputs: list[torch.Tensor], example_inputs: ExampleInputs) -> Reference:
        named = {f"output {i}": t for i, t in enumerate(outputs)}
        return Reference([Run("the example inputs", example_inputs, named, batch=batch_size(example_inputs))],
                         positional=True)

    def on_meta(self) -> bool:
        return any(t.is_meta for r in self.runs for t in r.outputs.values())

    def tensors(self) -> list[torch.Tensor]:
        return list(self.runs[0].outputs.values())


def _forward(model: nn.Module, example_inputs: ExampleInputs, trace: bool = False
             ) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """(named outputs, outputs that cannot be compared, ops run when ``trace``)."""
    args, kwargs = model_inputs(model, example_inputs)
    recorder = OpTrace() if trace else contextlib.nullcontext()
    with eval_mode(model), torch.no_grad(), recorder:
        out = model(*args, **kwargs)
    named, skipped = named_leaves(out)
    return named, skipped, recorder.ops if isinstance(recorder, OpTrace) else []


def run(model: nn.Module, example_inputs: ExampleInputs) -> list[torch.Tensor]:
    """Every output leaf of ``model`` in eval mode (Python numbers as 0-d tensors)."""
    return list(_forward(model, example_inputs)[0].values())


@contextlib.contextmanager
def masked(model: nn.Module, plan: Plan, *, spill_bytes: int | None = None) -> Iterator[None]:
    """Temporarily zero, in place, every slice the plan removes; restore the exact values after. The removed
    values wait in memory, or in a temporary file when they take more than ``spill_bytes`` (``SPILL_BYTES``), so
    the check makes no second copy of a large model."""
    state = model.state_dict(keep_vars=True)
    cuts: list[tuple[torch.Tensor, int, torch.Tensor]] = []
    seen: set[int] = set()
    for fqn, dims in plan.keep.items():
        t = state[fqn]
        if id(t) in seen:
            continue
        seen.add(id(t))
        for d, keep in dims.items():
            gone = torch.ones(t.shape[d], dtype=torch.bool)
            gone[torch.as_tensor(keep, dtype=torch.long)] = False
            if gone.any():
                cuts.append((t, d, gone.nonzero().flatten().to(t.device)))
    total = sum(t.numel() // t.shape[d] * len(idx) * t.element_size() for t, d, idx in cuts)
    limit = SPILL_BYTES if spill_bytes is None else spill_bytes
    saved: list[tuple[torch.Tensor, int, torch.Tensor, Any]] = []
    with SliceStore(spill=total > limit) as store:
        try:
            with torch.no_grad():
                for t, d, idx in cuts:
                    saved.append((t, d, idx, store.put(t.index_select(d, idx))))
                    t.index_fill_(d, idx, 0)
            yield
        finally:
            with torch.no_grad():
                for t, d, idx, handle in reversed(saved):
                    t.index_copy_(d, idx, store.get(handle).to(t.device))


@contextlib.contextmanager
def _as_reference(model: nn.Module, plan: Plan) -> Iterator[None]:
    from secateurs.depth.reference import bypassed
    from secateurs.verification.experts import routed_out

    with masked(model, plan), routed_out(model, plan), bypassed(model, plan.dropped_layers):
        yield


def masked_outputs(model: nn.Module, plan: Plan, example_inputs: ExampleInputs) -> list[torch.Tensor]:
    """Outputs of ``model`` with the plan's removed units zeroed, its removed experts never routed to (router logit
    ``-inf``) and its dropped blocks run as identity."""
    with _as_reference(model, plan):
        return run(model, example_inputs)


def reference_outputs(model: nn.Module, plan: Plan, example_inputs: ExampleInputs) -> Reference:
    """The masked original on the example inputs and on a second batch size (when forward() accepts one).

    Raises ``InvalidArgumentError`` for inputs that would make the comparison vacuous (no tensor, an empty batch,
    outputs without elements)."""
    check_example_inputs(example_inputs)
    notes: list[str] = []
    with _as_reference(model, plan):
        outputs, skipped, ops = _forward(model, example_inputs, trace=True)
        if not any(t.numel() for t in outputs.values()):
            raise InvalidArgumentError(f"{type(model).__name__} returns no output elements on the example inputs "
                                       f"({list(outputs) or 'no tensors'}), so verification would compare nothing")
        b = batch_size(example_inputs)
        runs = [Run(f"batch size {b}", example_inputs, outputs, ops, b)]
        second = resized_batch(example_inputs)
        if second is not None:
            inputs2, b2 = second
            try:
                outputs2, _, ops2 = _forward(model, inputs2, trace=True)
            except Exception as exc:
                notes.append(f"the original does not run at batch size {b2} ({type(exc).__name__}: "
                             f"{_first_line(exc)}): verified at batch size {b} only")
            else:
                runs.append(Run(f"batch size {b2}", inputs2, outputs2, ops2, b2))
                diff = first_difference(ops, ops2)
                if diff:
                    notes.append(f"forward() runs other operations at batch size {b2} than at {b} ({diff}): a "
                                 f"Python branch on the input shape; outputs were compared at these two sizes only")
    if skipped:
        notes.append(f"outputs that are not tensors or numbers were not compared: {', '.join(skipped)}")
    mode = training_note(model)
    if mode:
        notes.append(mode)
    return Reference(runs, notes)


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else ""


def compare(reference: Reference | list[torch.Tensor], pruned_model: nn.Module, plan: Plan,
            example_inputs: ExampleInputs, *, exact: bool | None = None, tolerance: float | None = None,
            reexport: bool = True, exporter: Callable[[nn.Module, ExampleInputs], Any] | None = None) -> VerifyResult:
    """Run ``pruned_model`` on the reference's inputs and compare with its outputs (the masked original's).

    ``reference`` is a ``Reference`` (``reference_outputs``) or a plain list of outputs on ``example_inputs``.
    ``exact`` (default: ``plan.exact``) compares values; otherwise, and on the meta device, only that the pruned
    model runs and keeps output names, shapes and dtypes. ``reexport`` also checks that torch.export still captures
    it, with ``exporter`` when given (``prune`` passes its capture, so the same export also counts the pruned MACs).
    """
    ref = reference if isinstance(reference, Reference) else Reference.of(reference, example_inputs)
    exact = plan.exact if exact is None else exact
    meta = ref.on_meta()
    numeric = exact and not meta
    mode = "exact" if numeric else "structural"
    shown = default_tolerance(ref.tensors()) if tolerance is None else tolerance
    notes = list(ref.notes)
    checks: list[tuple[str, OutputCheck]] = []
    for i, r in enumerate(ref.runs):
        at = "" if i == 0 else f" at {r.label} (the original runs there)"
        try:
            outputs, _, ops = _forward(pruned_model, r.inputs, trace=i == 0 and bool(r.ops))
        except Exception as exc:
            module = failing_module(pruned_model, exc)
            where = f" in module {module}" if module else ""
            return VerifyResult(False, mode, None, None, shown, False, None,
                                f"pruned model does not run{at}{where}: {type(exc).__name__}: {_first_line(exc)}. "
                                "A forward() probably uses a constant size (e.g. a head count or width stored as an "
                                "attribute) that no surgery handler refreshed: register one with "
                                "secateurs.surgery.registry.register_handler, or leave that module out with ignore=[...]."
                                + describe_unbound(plan.settings), notes)
        if ref.positional:
            outputs = {f"output {k}": t for k, t in enumerate(outputs.values())}
        why = layout_difference(r.outputs, outputs)
        if why:
            return VerifyResult(False, "structural", None, None, shown, False, None, why + at, notes)
        diff = first_difference(r.ops, ops) if i == 0 and r.ops and not plan.dropped_layers else None
        if diff:
            notes.append(f"the pruned model runs other operations than the original ({diff}): a branch in forward() "
                         "depends on a size the pruning changed (e.g. a fast path for even head counts)")
        if numeric:
            checks.extend((r.label, c) for c in check_outputs(r.outputs, outputs, tolerance))
    sizes = tuple(r.batch for r in ref.runs if r.batch is not None)
    max_abs = max((c.max_abs for _, c in checks), default=0.0)
    floats = [c.rel for _, c in checks if not c.exact_kind]
    rel = max(floats, default=0.0) if all(x == x for x in floats) else float("nan")
    reexported = None
    if reexport:
        try:
            (exporter or export_model)(pruned_model, example_inputs)
            reexported = True
        except Exception:
            reexported = False
    failed = [(label, c) for label, c in checks if not c.ok]
    if failed:
        where = "; ".join(f"{c.describe()} at {label}" for label, c in failed[:3])
        more = f" (and {len(failed) - 3} more)" if len(failed) > 3 else ""
        return VerifyResult(False, "exact", max_abs, rel, shown, True, reexported,
                            f"pruned model differs from the masked original: {where}{more}", notes, sizes)
    if reexported is False:
        return VerifyResult(False, mode, max_abs if numeric else None, rel if numeric else None, shown, True, False,
                            "pruned model runs but torch.export can no longer capture it", notes, sizes)
    return VerifyResult(True, mode, max_abs if numeric else None, rel if numeric else None, shown, True, reexported,
                        _ok_message(ref, checks, numeric, meta, reexported, sizes), notes, sizes)


def _ok_message(ref: Reference, checks: list[tuple[str, OutputCheck]], numeric: bool, meta: bool,
                reexported: bool | None, sizes: tuple[int, ...]) -> str:
    at = f" at batch size{'s' if len(sizes) > 1 else ''} {' and '.join(map(str, sizes))}" if sizes else ""
    if not numeric:
        why = " (meta device: no weights, outputs not compared)" if meta else ""
        return f"verified (structural){why}: runs{at}, keeps output shapes and dtypes" + (", re-exports" if reexported else "")
    outputs = ref.runs[0].outputs.values()
    n_float = sum(1 for t in outputs if is_float(t))
    n_int = len(ref.runs[0].outputs) - n_float
    rel = max((c.rel for _, c in checks if not c.exact_kind), default=0.0)
    max_abs = max((c.max_abs for _, c in checks), default=0.0)
    ints = f", {n_int} integer/bool output(s) identical" if n_int else ""
    return (f"verified (exact): {n_float} floating output(s) match the masked original{at}: max relative error "
            f"{rel:.2g} (per output and column, dtype tolerance), max abs error {max_abs:.2g}{ints}")


def verify(reference: nn.Module | Mapping[str, torch.Tensor], pruned: nn.Module, plan: Plan,
           example_inputs: ExampleInputs, *, tolerance: float | None = None, reexport: bool = True) -> VerifyResult:
    """Compare ``pruned`` with the unpruned ``reference`` model masked by ``plan``.

    ``reference`` is the unpruned module, or the state dict it had before pruning (the unpruned model is then
    rebuilt from ``pruned``, ``plan`` and that state dict).
    """
    if isinstance(reference, Mapping):
        from secateurs.surgery.restore import rebuild_original

        reference = rebuild_original(pruned, plan, reference)
    elif not isinstance(reference, nn.Module):
        raise InvalidTypeError(f"reference must be the unpruned nn.Module or its state dict (taken before pruning), "
                               f"got {type(reference).__name__}")
    result = compare(reference_outputs(reference, plan, example_inputs), pruned, plan, example_inputs,
                     tolerance=tolerance, reexport=reexport)
    return _settled(reference, pruned, plan, example_inputs, result, tolerance)


def verify_exact_subset(model: nn.Module, subset: Plan, example_inputs: ExampleInputs, *,
                        tolerance: float | None = None) -> VerifyResult:
    """Apply only the exactly-checkable groups to a copy of the unpruned ``model`` and compare numerically."""
    import copy

    from secateurs.surgery.apply import apply_plan

    reference = reference_outputs(model, subset, example_inputs)
    clone = copy.deepcopy(model)
    apply_plan(clone, subset)
    result = compare(reference, clone, subset, example_inputs, exact=True, tolerance=tolerance, reexport=False)
    return _settled(model, clone, subset, example_inputs, result, tolerance)


def _settled(original: nn.Module, pruned: nn.Module, plan: Plan, example_inputs: ExampleInputs,
             result: VerifyResult, tolerance: float | None) -> VerifyResult:
    """``result``, or when it failed on values only, the float64 comparison's if that one passes (``precision.py``)."""
    if tolerance is not None or not precision.applicable(pruned, result):
        return result
    in_float64 = recheck_in_float64(original, pruned, plan, example_inputs)
    return precision.settled(result, in_float64) if in_float64 is not None and in_float64.ok else result


def recheck_in_float64(original: nn.Module, pruned: nn.Module, plan: Plan,
                       example_inputs: ExampleInputs) -> VerifyResult | None:
    """``pruned`` compared with ``original`` masked by ``plan``, both copied to float64, with float64's tolerance;
    None when the float64 copies do not run (a forward() mixing in float32 tensors of its own)."""
    inputs = precision.double_inputs(example_inputs)
    try:
        reference = reference_outputs(precision.in_float64(original), plan, inputs)
        return compare(reference, precision.in_float64(pruned), plan, inputs, exact=True, reexport=False)
    except Exception:
        return None


def combine(structural: VerifyResult, subset: VerifyResult, n_inexact: int) -> VerifyResult:
    """One result for a plan whose exact groups were compared numerically and the rest structurally."""
    notes = list(dict.fromkeys(structural.notes + subset.notes))
    if not subset.ok:
        return VerifyResult(False, "exact", subset.max_abs_error, subset.rel_error, subset.tolerance, subset.shapes_ok,
                            structural.reexported, f"exactly-checkable groups alone: {subset.message}", notes,
                            subset.batch_sizes)
    if not structural.ok:
        return structural
    how = " in float64 (their float32 difference is rounding)" if subset.message.startswith("verified in float64") else ""
    message = (f"verified: exact groups match the masked original{how} (max relative error {subset.rel_error:.2g}, "
               f"max abs error {subset.max_abs_error:.2g}); {n_inexact} group(s) whose removal is not equal to "
               f"masking checked structurally (runs, keeps output shapes and dtypes"
               f"{', re-exports' if structural.reexported else ''})")
    return VerifyResult(True, "partial", subset.max_abs_error, subset.rel_error, subset.tolerance, True,
                        structural.reexported, message, notes, structural.batch_sizes)


def has_weights(model: nn.Module) -> bool:
    return not any(p.is_meta for p in model.parameters())
