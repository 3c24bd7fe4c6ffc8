"""An oracle for pruned models that shares no code with secateurs' own verification.

It zeroes, with plain tensor indexing, every slice a plan removes in a deep copy of the unpruned model, runs that
copy and the pruned model on fresh inputs, and compares what they return: every float output against its own
largest value, integer and bool outputs for equality. For plans that are not exact it checks structure only.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


def zeroed_original(original: nn.Module, plan: Any) -> nn.Module:
    """A deep copy of ``original`` with every index the plan does not keep set to zero, per tensor and dim."""
    if plan.dropped_layers:
        raise NotImplementedError("the independent oracle does not model dropped layers")
    ref = copy.deepcopy(original)
    tensors = dict(ref.named_parameters(remove_duplicate=False)) | dict(ref.named_buffers(remove_duplicate=False))
    with torch.no_grad():
        for fqn, dims in plan.keep.items():
            t = tensors[fqn]
            for dim, keep in dims.items():
                removed = [i for i in range(t.shape[dim]) if i not in set(keep)]
                index: list[Any] = [slice(None)] * t.ndim
                index[dim] = removed
                t[tuple(index)] = 0
    return ref


def leaves(out: Any) -> list[Any]:
    if isinstance(out, (tuple, list)):
        return [x for o in out for x in leaves(o)]
    if isinstance(out, dict):
        return [x for o in out.values() for x in leaves(o)]
    return [out]


def outputs(model: nn.Module, x: torch.Tensor) -> list[Any]:
    with torch.no_grad():
        return leaves(model.eval()(x))


def mismatch(want: list[Any], got: list[Any], exact: bool, tolerance: float) -> str | None:
    """Why ``got`` is not ``want`` (structure always; values when ``exact``), or None."""
    if len(want) != len(got):
        return f"{len(got)} outputs instead of {len(want)}"
    for k, (a, b) in enumerate(zip(want, got, strict=True)):
        if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
            if exact and a != b:
                return f"output {k}: {b!r} instead of {a!r}"
            continue
        if a.shape != b.shape or a.dtype != b.dtype:
            return f"output {k}: {tuple(b.shape)} {b.dtype} instead of {tuple(a.shape)} {a.dtype}"
        if not exact or a.numel() == 0:
            continue
        if a.is_floating_point():
            err = float((a.double() - b.double()).abs().max())
            scale = max(float(a.double().abs().max()), 1e-6)
            if not err <= tolerance * scale:
                return f"output {k}: max abs error {err:.3g}, {err / scale:.3g} of its largest value"
        elif not torch.equal(a, b):
            return f"output {k}: {int((a != b).sum())} integer/bool elements differ"
    return None


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def check_prune(case: Any, ratio: float, importance: str, seed: int, tolerance: float = 1e-3) -> str:
    """Prune a ``random_arch`` case with ``sc.prune``; return ``"exact"``, ``"structural"`` or ``"refused:<Error>"``.

    A refusal must be a ``SecateursError`` that says why and leaves the model as it was. Anything secateurs
    reports as verified must agree with the independent oracle at two batch sizes (values where the plan is exact,
    output structure otherwise); a disagreement fails with ``AssertionError`` (a silent mismatch).
    """
    import secateurs as sc
    from secateurs.errors import SecateursError

    torch.set_num_threads(1)
    model, x = case.model, case.inputs
    original = copy.deepcopy(model)
    before = _state(model)
    try:
        report = sc.prune(model, x, ratio=ratio, importance=importance, seed=seed)
    except SecateursError as exc:
        assert str(exc), "refusals must say why"
        after = _state(model)
        assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before), (
            f"a refused plan left the model changed (case {case.seed})")
        return f"refused:{type(exc).__name__}"
    plan = report.plan
    assert report.verification is not None and report.verification.ok
    assert (report.verification.mode == "exact") == (plan.exact and plan.removed_units() > 0) or not plan.removed_units()
    reference = zeroed_original(original, plan)
    for k, batch in enumerate((x.shape[0], x.shape[0] + 1)):
        inputs = case.fresh_inputs(1000 + case.seed + k, batch=batch)
        why = mismatch(outputs(reference, inputs), outputs(model, inputs), plan.exact, tolerance)
        assert why is None, (f"silent mismatch (case {case.seed}, ratio {ratio}, {importance}, seed {seed}, "
                             f"batch {batch}, plan exact={plan.exact}): {why}; secateurs said: "
                             f"{report.verification.message}")
    return "exact" if plan.exact else "structural"
