"""Rebuild the unpruned model from a pruned one, its plan and the state dict it had before pruning.

``verify`` needs the original model to compute the masked reference. A user who kept only the
state dict (``model_before_state = {k: v.clone() for k, v in model.state_dict().items()}``) gets it
back here: the pruned tensors are swapped for the original ones and every touched module runs its
surgery handler again with the argument values it had before pruning (``Plan.hints_before``), so
attributes such as ``in_features``, ``num_heads`` or an HF ``config`` are widened back.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn

from secateurs.errors import ApplyError, VerificationError
from secateurs.graph.program import is_program_graph
from secateurs.plans import Plan
from secateurs.surgery.apply import tensor_owners
from secateurs.surgery.attributes import write_attributes_
from secateurs.surgery.graph_literals import rewrite_literals_
from secateurs.surgery.registry import find_handler, load_for


def rebuild_original(pruned: nn.Module, plan: Plan, state: Mapping[str, torch.Tensor]) -> nn.Module:
    """A copy of ``pruned`` with the shapes and weights of ``state`` (the state dict before ``plan`` was applied)."""
    if plan.dropped_layers:
        raise VerificationError("the plan drops whole layers, which cannot be rebuilt from a state dict; pass the "
                                "unpruned module as the reference instead")
    _check_state(plan, state)
    if plan.hints and not plan.hints_before:
        raise VerificationError(
            "this plan predates the record of argument values before pruning (hints_before), so the unpruned "
            "model cannot be rebuilt from a state dict; pass the unpruned module as the reference instead")
    reference = copy.deepcopy(pruned)
    load_for(reference)
    current = reference.state_dict(keep_vars=True)
    owners = tensor_owners(reference)
    modules = dict(reference.named_modules(remove_duplicate=False))
    touched: set[str] = set()
    shapes_now: dict[str, dict[str, tuple[int, ...]]] = {}
    done: set[int] = set()
    for fqn in plan.keep:
        if fqn not in current:
            raise VerificationError(f"pruned model has no tensor {fqn!r} that the plan slices; is this the model the "
                                    "plan was applied to?")
        old = current[fqn]
        if id(old) in done:
            continue
        done.add(id(old))
        original = state[fqn].detach().clone().to(device=old.device)
        shared: nn.Parameter | None = None
        for name, module, attr in owners.get(id(old), []):
            path = name.rpartition(".")[0]
            parts = path.split(".") if path else []
            touched.update(".".join(parts[:i]) for i in range(len(parts) + 1))
            for i in range(len(parts) + 1):
                prefix = ".".join(parts[:i])
                shapes_now.setdefault(prefix, {})[".".join(name.split(".")[i:])] = tuple(old.shape)
            if attr in module._parameters:
                shared = shared or nn.Parameter(original, requires_grad=old.requires_grad)
                module._parameters[attr] = shared
            else:
                module._buffers[attr] = original
    touched |= {p for p in plan.hints if p in modules}
    try:
        write_attributes_(reference, plan, restore=True)
    except ApplyError as exc:
        raise VerificationError(f"cannot rebuild the unpruned model: {exc}") from exc
    for path in sorted(touched, key=lambda p: -p.count(".") if p else 1):
        found = modules.get(path)
        handler = find_handler(found) if found is not None else None
        if handler is not None and found is not None:
            handler(found, {**plan.hints_before.get(path, {}), "shapes_before": shapes_now.get(path, {})})
    if plan.literals and is_program_graph(reference):
        try:
            rewrite_literals_(reference, plan.literals, reverse=True)  # type: ignore[arg-type]
        except ApplyError as exc:
            raise VerificationError(f"cannot rebuild the unpruned program: {exc}") from exc
    try:
        reference.load_state_dict(dict(state), strict=True)
    except RuntimeError as exc:
        raise VerificationError(f"the state dict does not load into the rebuilt unpruned model: {exc}") from exc
    return reference


def _check_state(plan: Plan, state: Mapping[str, torch.Tensor]) -> None:
    for fqn, shape in plan.shapes.items():
        t = state.get(fqn)
        if t is None and fqn not in plan.keep:
            continue  # e.g. a non-persistent buffer the plan does not slice
        if t is None:
            raise VerificationError(f"the reference state dict has no tensor {fqn!r}; pass the state dict of the model "
                                    "the plan was made for, taken before pruning")
        if list(t.shape) != list(shape):
            raise VerificationError(
                f"reference state dict tensor {fqn!r} has shape {list(t.shape)}, but the plan was made for "
                f"{list(shape)}: take model.state_dict() BEFORE pruning (cloned), or pass the unpruned module")
