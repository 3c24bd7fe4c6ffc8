"""Verification: the pruned model equals the original with removed units zeroed (where exact)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from secateurs.errors import InvalidTypeError, VerificationError
from secateurs.graph.capture import ExampleInputs, eval_mode, export_model, model_inputs
from secateurs.planning.attributes import describe_unbound
from secateurs.plans import Plan


@dataclass
class VerifyResult:
    ok: bool
    mode: str  # "exact": compared with the masked original; "structural": runs, shapes, re-export;
    # "partial": exact groups compared numerically on a copy, the rest structurally
    max_abs_error: float | None
    rel_error: float | None
    tolerance: float
    shapes_ok: bool
    reexported: bool | None
    message: str

    def raise_if_failed(self) -> None:
        if not self.ok:
            raise VerificationError(self.message)


def run(model: nn.Module, example_inputs: ExampleInputs) -> list[torch.Tensor]:
    args, kwargs = model_inputs(model, example_inputs)
    with eval_mode(model), torch.no_grad():
        out = model(*args, **kwargs)
    if isinstance(out, dict) and not tree_leaves(out):
        out = list(out.values())
    return [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]


@contextlib.contextmanager
def masked(model: nn.Module, plan: Plan) -> Iterator[None]:
    """Temporarily zero, in place, every slice the plan removes; restore the exact values after."""
    state = model.state_dict(keep_vars=True)
    saved: list[tuple[torch.Tensor, int, torch.Tensor, torch.Tensor]] = []
    seen: set[int] = set()
    try:
        with torch.no_grad():
            for fqn, dims in plan.keep.items():
                t = state[fqn]
                if id(t) in seen:
                    continue
                seen.add(id(t))
                for d, keep in dims.items():
                    removed = sorted(set(range(t.shape[d])) - set(keep))
                    if not removed:
                        continue
                    idx = torch.as_tensor(removed, dtype=torch.long, device=t.device)
                    saved.append((t, d, idx, t.index_select(d, idx).clone()))
                    t.index_fill_(d, idx, 0)
        yield
    finally:
        with torch.no_grad():
            for t, d, idx, values in reversed(saved):
                t.index_copy_(d, idx, values)


def masked_outputs(model: nn.Module, plan: Plan, example_inputs: ExampleInputs) -> list[torch.Tensor]:
    """Outputs of ``model`` with the plan's removed units zeroed and its dropped blocks run as identity."""
    from secateurs.depth.reference import bypassed

    with masked(model, plan), bypassed(model, plan.dropped_layers):
        return run(model, example_inputs)


def compare(reference: list[torch.Tensor], pruned_model: nn.Module, plan: Plan, example_inputs: ExampleInputs,
            *, exact: bool | None = None, tolerance: float | None = None, reexport: bool = True,
            exporter: Callable[[nn.Module, ExampleInputs], Any] | None = None) -> VerifyResult:
    """Run ``pruned_model`` and compare with ``reference`` (the masked original's outputs). ``reexport`` also checks
    that torch.export still captures it, with ``exporter`` when given (``prune`` passes its capture, so the same
    export also counts the pruned MACs)."""
    exact = plan.exact if exact is None else exact
    tolerance = default_tolerance(reference) if tolerance is None else tolerance
    try:
        outputs = run(pruned_model, example_inputs)
    except Exception as exc:
        return VerifyResult(False, "exact" if exact else "structural", None, None, tolerance, False, None,
                            f"pruned model does not run: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}. "
                            "A forward() probably uses a constant size (e.g. a head count or width stored as an "
                            "attribute) that no surgery handler refreshed: register one with "
                            "secateurs.surgery.registry.register_handler, or leave that module out with ignore=[...]."
                            + describe_unbound(plan.settings))
    shapes_ok = len(outputs) == len(reference) and all(a.shape == b.shape for a, b in zip(outputs, reference, strict=False))
    if not shapes_ok:
        got = [tuple(t.shape) for t in outputs]
        want = [tuple(t.shape) for t in reference]
        return VerifyResult(False, "structural", None, None, tolerance, False, None,
                            f"pruned model output shapes {got} differ from the original {want}")
    max_abs, rel = 0.0, 0.0
    for a, b in zip(reference, outputs, strict=True):
        if not a.is_floating_point():
            continue
        err = (a.float() - b.float()).abs().max().item() if a.numel() else 0.0
        scale = max(a.float().abs().max().item() if a.numel() else 0.0, 1e-6)
        max_abs, rel = max(max_abs, err), max(rel, err / scale)
    reexported = None
    if reexport:
        try:
            (exporter or export_model)(pruned_model, example_inputs)
            reexported = True
        except Exception:
            reexported = False
    if exact and not rel <= tolerance:  # also catches NaN
        return VerifyResult(False, "exact", max_abs, rel, tolerance, True, reexported,
                            f"pruned model differs from the masked original: max abs error {max_abs:.3g}, "
                            f"relative {rel:.3g} > tolerance {tolerance:g}")
    if reexported is False:
        return VerifyResult(False, "exact" if exact else "structural", max_abs, rel, tolerance, True, False,
                            "pruned model runs but torch.export can no longer capture it")
    mode = "exact" if exact else "structural"
    detail = f"max relative error {rel:.2g}" if exact else "runs, keeps output shapes" + (", re-exports" if reexported else "")
    return VerifyResult(True, mode, max_abs if exact else None, rel if exact else None, tolerance, True, reexported,
                        f"verified ({mode}): {detail}")


_TOLERANCE = {torch.float64: 1e-8, torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 3e-2}


def default_tolerance(outputs: list[torch.Tensor]) -> float:
    """Relative tolerance for the least precise floating output (float32: 1e-4, bfloat16: 3e-2)."""
    dtypes = [t.dtype for t in outputs if t.is_floating_point()]
    return max((_TOLERANCE.get(d, 1e-4) for d in dtypes), default=1e-4)


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
    return compare(masked_outputs(reference, plan, example_inputs), pruned, plan, example_inputs,
                   tolerance=tolerance, reexport=reexport)


def verify_exact_subset(model: nn.Module, subset: Plan, example_inputs: ExampleInputs, *,
                        tolerance: float | None = None) -> VerifyResult:
    """Apply only the exactly-checkable groups to a copy of the unpruned ``model`` and compare numerically."""
    import copy

    from secateurs.surgery.apply import apply_plan

    reference = masked_outputs(model, subset, example_inputs)
    clone = copy.deepcopy(model)
    apply_plan(clone, subset)
    return compare(reference, clone, subset, example_inputs, exact=True, tolerance=tolerance, reexport=False)


def combine(structural: VerifyResult, subset: VerifyResult, n_inexact: int) -> VerifyResult:
    """One result for a plan whose exact groups were compared numerically and the rest structurally."""
    if not subset.ok:
        return VerifyResult(False, "exact", subset.max_abs_error, subset.rel_error, subset.tolerance, subset.shapes_ok,
                            structural.reexported, f"exactly-checkable groups alone: {subset.message}")
    if not structural.ok:
        return structural
    message = (f"verified: exact groups match the masked original (max relative error {subset.rel_error:.2g}); "
               f"{n_inexact} group(s) that normalise over the pruned dimension checked structurally "
               f"(runs, keeps output shapes{', re-exports' if structural.reexported else ''})")
    return VerifyResult(True, "partial", subset.max_abs_error, subset.rel_error, subset.tolerance, True,
                        structural.reexported, message)


def has_weights(model: nn.Module) -> bool:
    return not any(p.is_meta for p in model.parameters())


