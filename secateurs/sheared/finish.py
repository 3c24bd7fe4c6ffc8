"""Prune by the learned masks to exactly the target shape, and check the result equals the masked model.

The final masks keep exactly the target count of every structure (``HardConcrete.final``). Their values are folded
into the weights that write what they scale (the ``o_proj`` columns of each head, the ``down_proj`` columns of each
neuron, both projections' rows and the embedding columns of each hidden dim, both projections of each layer), so
the unhooked model computes what the hooked one did; then a secateurs plan removes every unit whose value is 0 and
every block whose layer value is 0 (its contribution is already zero). With the hidden size pruned, RMS norms would
average over fewer squares, so their scales are multiplied by ``sqrt(D / d)``. The pruned model is compared with
the masked one on the example inputs (``tolerance``): on any failure the model is restored as it was.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from secateurs.depth.planning import DropChoice, attach, without_dropped
from secateurs.errors import VerificationError
from secateurs.graph.analysis import Analysis, analyze
from secateurs.graph.capture import ExampleInputs
from secateurs.planning.build import build_plan
from secateurs.plans import Plan
from secateurs.rotation.rotate import max_relative_error
from secateurs.rotation.stream import find_stream
from secateurs.sheared.hooks import MaskValues, head_scale, masked
from secateurs.sheared.layout import Layout
from secateurs.surgery.apply import apply_plan, snapshot_modules
from secateurs.verification.oracle import run


def _fqn(model: nn.Module, module: nn.Module) -> str:
    return next(name for name, m in model.named_modules() if m is module)


def _untie_embeddings(model: nn.Module, layout: Layout) -> None:
    """Folding hidden values into the embeddings must not scale a tied LM head."""
    weight = layout.embed.get_parameter("weight")
    if any(p is weight for n, p in model.named_parameters(remove_duplicate=False) if not n.startswith(
            _fqn(model, layout.embed) + ".")):
        layout.embed.weight = nn.Parameter(weight.detach().clone(), requires_grad=weight.requires_grad)
        if getattr(getattr(model, "config", None), "tie_word_embeddings", False):
            model.config.tie_word_embeddings = False  # type: ignore[union-attr]


def fold_(model: nn.Module, layout: Layout, values: dict[str, torch.Tensor]) -> None:
    """Write mask values into the weights (new Parameters, so a module snapshot taken before restores them)."""
    hidden, layers, ffn = values.get("hidden"), values.get("layers"), values.get("ffn")

    def put(module: nn.Module, attr: str, value: torch.Tensor) -> None:
        old = module.get_parameter(attr)
        module._parameters[attr] = nn.Parameter(value.to(old.dtype), requires_grad=old.requires_grad)

    def param(module: nn.Module, attr: str) -> torch.Tensor:
        return module.get_parameter(attr)

    with torch.no_grad():
        if hidden is not None:
            _untie_embeddings(model, layout)
            put(layout.embed, "weight", param(layout.embed, "weight") * hidden)
        for i, (attn, mlp) in enumerate(zip(layout.attn_out, layout.mlp_out, strict=True)):
            rows = torch.ones(layout.hidden)
            rows = rows * layers[i] if layers is not None else rows
            rows = rows * hidden if hidden is not None else rows
            heads = head_scale(values, layout, i)
            cols_attn = heads.repeat_interleave(layout.head_dim) if heads is not None else None
            cols_mlp = ffn[i] if ffn is not None else None
            for module, cols in ((attn, cols_attn), (mlp, cols_mlp)):
                w = param(module, "weight") * rows[:, None]
                put(module, "weight", w * cols[None, :] if cols is not None else w)
                if module._parameters.get("bias") is not None:
                    put(module, "bias", param(module, "bias") * rows)


def _units(group: Any, fqn: str, dim: int, gone: set[int]) -> list[int]:
    member = next((m for m in group.members if m.fqn == fqn and m.dim == dim), None)
    if member is None or not gone:
        return []
    idx = group.unit_index[member.cls]
    return [u for u in range(group.n_units) if set(idx[u].tolist()) <= gone]


def removed_units(model: nn.Module, analysis: Analysis, layout: Layout, values: dict[str, torch.Tensor]) -> dict[int, np.ndarray]:
    """Group id -> units to remove: those whose every index along a mask's dim has value 0."""
    wanted: list[tuple[str, str, int, set[int]]] = []  # (group kind, fqn, dim, removed indices)
    if "hidden" in values:
        gone = set(torch.nonzero(values["hidden"] == 0).flatten().tolist())
        wanted.append(("channels", _fqn(model, layout.embed) + ".weight", 1, gone))
    hd, group = layout.head_dim, layout.group_size
    for i, (attn, mlp) in enumerate(zip(layout.attn_out, layout.mlp_out, strict=True)):
        o_proj, down = _fqn(model, attn) + ".weight", _fqn(model, mlp) + ".weight"
        if "ffn" in values:
            wanted.append(("channels", down, 1, set(torch.nonzero(values["ffn"][i] == 0).flatten().tolist())))
        for kind, name in (("heads", "kv_heads"), ("query_heads", "query_heads")):
            if name not in values:
                continue
            zero = torch.nonzero(values[name][i] == 0).flatten().tolist()
            heads = [g * group + j for g in range(layout.kv_heads) for j in range(group)
                     if (g if name == "kv_heads" else j) in zero]
            wanted.append((kind, o_proj, 1, {h * hd + c for h in heads for c in range(hd)}))
    out: dict[int, np.ndarray] = {}
    for g in analysis.groups:
        units: set[int] = set()
        for kind, fqn, dim, gone in wanted:
            if g.kind == kind:
                units.update(_units(g, fqn, dim, gone))
        if units:
            out[g.id] = np.array(sorted(units), dtype=np.int64)
    return out


def _rescale_norms(model: nn.Module, analysis: Analysis, full: int, kept: int) -> float:
    scale = math.sqrt(full / kept)
    stream = find_stream(model, analysis)
    with torch.no_grad():
        for norm in stream.norms:
            w = model.get_parameter(f"{norm.path}.weight")
            w.copy_(norm.weight_for((norm.a * w.double() + norm.b) * scale).to(w.dtype))
    return scale


def prune_by_masks(model: nn.Module, layout: Layout, values: dict[str, torch.Tensor], example_inputs: ExampleInputs,
                   tolerance: float, record: dict[str, Any]) -> tuple[Plan, float]:
    """Fold, plan, apply, rescale and check; (the plan, the pruned model's error against the masked model)."""
    holder = MaskValues()
    holder.current = values
    with masked(layout, holder):
        reference = run(model, example_inputs)
    undo = snapshot_modules(list(model.modules()))
    try:
        fold_(model, layout, values)
        analysis = analyze(model, example_inputs)
        dropped = [] if "layers" not in values else torch.nonzero(values["layers"] == 0).flatten().tolist()
        choice = DropChoice(layout.blocks_path, {"dropped": dropped, "method": "shear"}) if dropped else None
        width = without_dropped(analysis, choice)
        plan = attach(build_plan(width, removed_units(model, width, layout, values), {"shear": record}), choice)
        if choice is not None:
            plan.settings.pop("drop_layers", None)
        apply_plan(model, plan, journal=undo.journal)
        if "hidden" in values:
            record["norm_scale"] = _rescale_norms(model, analyze(model, example_inputs), layout.hidden,
                                                  int((values["hidden"] != 0).sum()))
        error = max_relative_error(reference, run(model, example_inputs))
        if not error <= tolerance:
            raise VerificationError(f"the model pruned by the masks differs from the masked model (relative error "
                                    f"{error:.3g} > tolerance {tolerance:g}); the model was restored")
    except Exception:
        undo.restore()
        raise
    undo.journal.drop()
    return plan, error
