"""Apply a plan to a model in place, transactionally: on any failure the model is restored."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from secateurs.errors import ApplyError, PlanError
from secateurs.graph.analysis import fingerprint
from secateurs.graph.program import is_program_graph
from secateurs.graph.sharded import refuse_sharded
from secateurs.plans import Plan
from secateurs.progress import bar
from secateurs.surgery.attributes import attribute_owners, write_attributes_
from secateurs.surgery.graph_literals import rewrite_literals_
from secateurs.surgery.journal import Journal
from secateurs.surgery.registry import find_handler, load_for


@dataclass
class _Snapshot:
    modules: dict[nn.Module, tuple[type, dict[str, Any], dict[str, Any], dict[str, Any]]]
    configs: dict[int, tuple[Any, dict[str, Any]]]
    journal: Journal = field(default_factory=Journal)  # removed slices of the tensors surgery emptied

    def restore(self) -> None:
        self.journal.restore()  # refill the emptied tensor objects first; the dicts below point back at them
        for m, (cls, attrs, params, buffers) in self.modules.items():
            m.__class__ = cls  # handlers may swap in a class whose forward fits the pruned shapes
            m.__dict__.clear()
            m.__dict__.update(attrs)
            m.__dict__["_parameters"] = params
            m.__dict__["_buffers"] = buffers
        for obj, state in self.configs.values():
            obj.__dict__.clear()
            obj.__dict__.update(state)


def check_plan_fits(model: nn.Module, plan: Plan) -> None:
    if fingerprint(model) == plan.fingerprint:
        return
    state = model.state_dict(keep_vars=True)
    for name, shape in plan.shapes.items():
        if name not in state:
            raise PlanError(f"plan does not fit this model: it has no tensor {name!r} (plan made for another architecture)")
        if list(state[name].shape) != list(shape):
            raise PlanError(
                f"plan does not fit this model: {name!r} has shape {list(state[name].shape)} but the plan expects "
                f"{list(shape)} (already pruned, or a different model); apply plans to a fresh copy of the model they were made for"
            )


def tensor_owners(model: nn.Module) -> dict[int, list[tuple[str, nn.Module, str]]]:
    """id(tensor) -> every (fqn, owning module, attribute) it appears under (tied weights share one id)."""
    out: dict[int, list[tuple[str, nn.Module, str]]] = {}
    for path, m in model.named_modules(remove_duplicate=False):
        for attr, t in list(m._parameters.items()) + list(m._buffers.items()):
            if t is not None:
                out.setdefault(id(t), []).append((f"{path}.{attr}" if path else attr, m, attr))
    return out


def apply_plan(model: nn.Module, plan: Plan, *, journal: Journal | None = None) -> nn.Module:
    """Slice and refresh ``model`` in place, transactionally. A large surgery writes each replaced tensor to a
    spill file and empties it as soon as its slices are cut (``journal``: the caller's, when its own rollback
    must restore them later; else one of its own, dropped on success)."""
    refuse_sharded(model, "apply a plan to")
    check_plan_fits(model, plan)
    load_for(model)
    state = model.state_dict(keep_vars=True)
    owners = tensor_owners(model)
    modules = dict(model.named_modules(remove_duplicate=False))
    touched_paths: set[str] = set()
    for fqn in plan.keep:
        if fqn not in state:
            raise PlanError(f"plan slices {fqn!r}, which this model does not have")
        for name, _, _ in owners.get(id(state[fqn]), []):
            parts = name.split(".")[:-1]
            for i in range(len(parts) + 1):
                touched_paths.add(".".join(parts[:i]))
    touched_paths |= {p for p in plan.hints if p in modules}
    saved_paths = set(modules) if plan.dropped_layers else touched_paths  # dropping renumbers and reconfigures anywhere
    saved = {id(m): m for m in [modules[p] for p in saved_paths if p in modules] + attribute_owners(model, plan)}
    snapshot = snapshot_modules(list(saved.values()), journal)
    replaced = {id(state[f]): state[f] for f in plan.keep}
    snapshot.journal.begin(sum(t.numel() * t.element_size() for t in replaced.values() if not t.is_meta))
    before = _shapes_before(plan, touched_paths)
    try:
        if plan.dropped_layers:  # first, so config sync in the width handlers sees only the blocks that remain
            from secateurs.surgery.blocks import drop_layers_, merge_layers_

            merge_layers_(model, plan.merged_layers)  # LaCo: runs merged into their first block, the rest dropped
            drop_layers_(model, plan.dropped_layers)
        _slice_tensors(state, owners, plan, snapshot.journal)
        write_attributes_(model, plan, configs=False)  # before the handlers, which know their modules best
        for path in sorted(touched_paths, key=lambda p: -p.count(".") if p else 1):
            m = modules.get(path)
            if m is None:
                continue
            handler = find_handler(m)
            if handler is not None:
                handler(m, {**plan.hints.get(path, {}), "shapes_before": before.get(path, {}), "path": path,
                            "root": model})
        write_attributes_(model, plan, configs=True)  # config fields: after handlers that rebuild the config
        if plan.literals and is_program_graph(model):
            rewrite_literals_(model, plan.literals)  # type: ignore[arg-type]  # last: undoes itself if it fails
    except Exception as exc:
        snapshot.restore()
        if isinstance(exc, ApplyError):
            raise ApplyError(f"{exc}; the model was restored unchanged") from exc
        raise ApplyError(f"surgery failed ({type(exc).__name__}: {exc}); the model was restored unchanged") from exc
    if journal is None:
        snapshot.journal.drop()  # final: no caller will roll back
    return model


def _shapes_before(plan: Plan, paths: set[str]) -> dict[str, dict[str, tuple[int, ...]]]:
    """Module path -> {name relative to it: shape before pruning} for the tensors under each touched module."""
    out: dict[str, dict[str, tuple[int, ...]]] = {}
    for fqn, shape in plan.shapes.items():
        parts = fqn.split(".")
        for i in range(len(parts)):
            prefix = ".".join(parts[:i])
            if prefix in paths:
                out.setdefault(prefix, {})[".".join(parts[i:])] = tuple(shape)
    return out


def snapshot_modules(mods: list[nn.Module], journal: Journal | None = None) -> _Snapshot:
    saved = {m: (type(m), dict(m.__dict__), dict(m._parameters), dict(m._buffers)) for m in mods}
    configs: dict[int, tuple[Any, dict[str, Any]]] = {}
    for m in mods:
        cfg = getattr(m, "config", None)
        if cfg is not None and hasattr(cfg, "__dict__") and id(cfg) not in configs:
            configs[id(cfg)] = (cfg, copy.deepcopy(cfg.__dict__))
    return _Snapshot(saved, configs, journal if journal is not None else Journal())


def _slice_tensors(state: dict[str, torch.Tensor], owners: dict[int, list[tuple[str, nn.Module, str]]], plan: Plan,
                   journal: Journal) -> None:
    done: set[int] = set()
    for fqn, dims in bar(plan.keep.items(), "surgery", len(plan.keep)):
        old = state[fqn]
        if id(old) in done:
            continue
        done.add(id(old))
        new = journal.slice(old, dims)
        for _, module, attr in owners[id(old)]:
            if attr in module._parameters:
                module._parameters[attr] = nn.Parameter(new, requires_grad=old.requires_grad)
            else:
                module._buffers[attr] = new
        # tied parameters must stay one object
        replacement = None
        for _, module, attr in owners[id(old)]:
            if attr in module._parameters:
                if replacement is None:
                    replacement = module._parameters[attr]
                module._parameters[attr] = replacement
