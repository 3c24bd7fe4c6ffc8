"""SliceGPT's rotation (Ashkboos et al., 2024): fold the norm scales into the Linears that read them, then rotate
the whole residual stream by one orthogonal Q, in place; the model computes the same function (checked).

With every RMS norm scale folded into its consumers (the norm then scales by 1), an RMS norm commutes with an
orthogonal Q, so writing every stream tensor in the basis of Q leaves the outputs unchanged: along its stream dim
``d``, every tensor becomes ``movedim(t, d, -1) @ Q`` (producers, readers and embeddings alike). With Q the
principal axes of the stream (``pca``), the stream's dimensions are ordered by the variance they carry, and
pruning the hidden size removes the last ones. After slicing ``D`` to ``d`` dims the norms average over ``d``
squares instead of ``D``; ``finish_slice_`` sets their scale to ``sqrt(D / d)`` so the normalised vectors keep
their length. One Q for every block keeps the architecture stock: ``save_pretrained`` output reloads with
``from_pretrained`` (the norm weights hold the scale).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from secateurs.errors import ApplyError, PlanError, VerificationError
from secateurs.graph.analysis import Analysis
from secateurs.graph.capture import ExampleInputs
from secateurs.graph.groups import Group
from secateurs.plans import Plan
from secateurs.rotation.pca import principal_axes, site_axes
from secateurs.rotation.per_layer import combined_eigenvalues, member_stretch, shortcut_weights, stretches
from secateurs.rotation.per_layer import record as per_layer_record
from secateurs.rotation.shortcuts import install, uninstall
from secateurs.rotation.stream import Norm, Stream, find_stream
from secateurs.verification.oracle import default_tolerance, run


@dataclass
class Rotation:
    """A rotation done in place: what it touched, the axes, and how to undo it."""

    stream: Stream
    eigenvalues: torch.Tensor  # one per hidden index: what slicing it loses (per-layer: averaged over stretches)
    record: dict[str, Any]
    _saved: list[tuple[nn.Module, str, Any]] = field(default_factory=list, repr=False)
    _config: tuple[Any, dict[str, Any]] | None = field(default=None, repr=False)
    _shortcuts: list[tuple[Any, list[Any]]] = field(default_factory=list, repr=False)
    _model: nn.Module | None = field(default=None, repr=False)

    def undo(self) -> None:
        """Put back every parameter (and the config) as it was before the rotation; remove any shortcut."""
        for site, handles in reversed(self._shortcuts):
            assert self._model is not None
            uninstall(self._model, site, handles)
        self._shortcuts.clear()
        for module, attr, old in reversed(self._saved):
            module._parameters[attr] = old
        if self._config is not None:
            obj, state = self._config
            obj.__dict__.clear()
            obj.__dict__.update(state)
        self._saved.clear()


def _owners(model: nn.Module) -> dict[int, list[tuple[nn.Module, str, str]]]:
    out: dict[int, list[tuple[nn.Module, str, str]]] = {}
    for path, m in model.named_modules(remove_duplicate=False):
        for attr, p in m._parameters.items():
            if p is not None:
                out.setdefault(id(p), []).append((m, attr, f"{path}.{attr}" if path else attr))
    return out


def _replace(rot: Rotation, owners: list[tuple[nn.Module, str, str]], value: torch.Tensor) -> None:
    """Give every owner of one parameter the new value (one new Parameter, so tied names stay tied)."""
    old = owners[0][0].get_parameter(owners[0][1])
    new = nn.Parameter(value.to(old.dtype), requires_grad=old.requires_grad)
    for module, attr, _ in owners:
        rot._saved.append((module, attr, module._parameters[attr]))
        module._parameters[attr] = new


def _untie(rot: Rotation, model: nn.Module, fqn: str) -> None:
    """Give ``fqn`` its own copy of a weight tied to others (a folded LM head must not scale the embeddings)."""
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "tie_word_embeddings", None) and rot._config is None:
        import copy

        rot._config = (config, copy.deepcopy(config.__dict__))
        config.tie_word_embeddings = False
    path, _, attr = fqn.rpartition(".")
    module = model.get_submodule(path) if path else model
    old = module.get_parameter(attr)
    rot._saved.append((module, attr, old))
    module._parameters[attr] = nn.Parameter(old.detach().clone(), requires_grad=old.requires_grad)


def _fold(rot: Rotation, model: nn.Module) -> None:
    modules = dict(model.named_modules())
    for norm in rot.stream.norms:
        weight = modules[norm.path]._parameters["weight"]
        assert weight is not None  # probe_norm checked it
        scale = norm.a * weight.detach().double() + norm.b
        for fqn in norm.consumers:
            owners = _owners(model)
            param = model.get_parameter(fqn)
            if len(owners[id(param)]) > 1:
                _untie(rot, model, fqn)
                param = model.get_parameter(fqn)
            path, _, attr = fqn.rpartition(".")
            if param.ndim != 2 or param.shape[1] != scale.shape[0]:
                raise PlanError(f"rotate=True: {fqn} reads {norm.path} but is not a Linear weight of {scale.shape[0]} "
                                f"inputs (shape {tuple(param.shape)})")
            _replace(rot, [(modules[path], attr, fqn)], param.detach().double() * scale)
        _replace(rot, [(modules[norm.path], "weight", f"{norm.path}.weight")],
                 norm.weight_for(torch.ones_like(scale)))


def _rotate_members(rot: Rotation, model: nn.Module, basis: Callable[[str], torch.Tensor]) -> None:
    owners = _owners(model)
    done: set[int] = set()
    skip = rot.stream.norm_weights()
    for fqn, dim in rot.stream.members:
        if fqn in skip:
            continue
        param = model.get_parameter(fqn)
        if id(param) in done:
            continue
        done.add(id(param))
        t = param.detach().double().movedim(dim, -1)
        _replace(rot, owners[id(param)], (t @ basis(fqn).to(t.device)).movedim(-1, dim))


def rotate_(model: nn.Module, analysis: Analysis, example_inputs: ExampleInputs, calibration: Any, *,
            tolerance: float | None = None, per_layer: bool = False) -> Rotation:
    """Fold, compute Q from ``calibration`` and rotate ``model`` in place (``per_layer``: one Q per stretch of the
    stream, with shortcuts); undone (and an error raised) when the outputs on ``example_inputs`` change by more
    than ``tolerance`` (relative to their largest value)."""
    stream = find_stream(model, analysis)
    modules = dict(model.named_modules())
    extra: dict[str, Any] = {"per_layer": False}
    if per_layer:
        order, writers, sites = stretches(model, stream)
        stretch_axes = site_axes(model, [modules[n.path] for n in order], stream.width, calibration)
        where = member_stretch(stream, order, writers)
        eigenvalues, first = combined_eigenvalues(stretch_axes), stretch_axes[0]
        extra = per_layer_record(sites)
    else:
        first = principal_axes(model, [modules[n.path] for n in stream.norms], stream.width, calibration)
        eigenvalues = first.eigenvalues
    reference = run(model, example_inputs)
    rot = Rotation(stream, eigenvalues, {}, _model=model)
    try:
        with torch.no_grad():
            _fold(rot, model)
            if per_layer:
                _rotate_members(rot, model, lambda fqn: stretch_axes[where[fqn]].q)
                for site, weight in zip(sites, shortcut_weights(stretch_axes), strict=True):
                    rot._shortcuts.append((site, install(model, site, weight.to(_float_dtype(model)))))
            else:
                _rotate_members(rot, model, lambda fqn: first.q)
        error = max_relative_error(reference, run(model, example_inputs))
        tol = default_tolerance(reference) if tolerance is None else tolerance
        if not error <= tol:
            raise VerificationError(
                f"rotating the residual stream changed the outputs (relative error {error:.3g} > {tol:g}): the stream "
                "passes through an operation that is not rotation-invariant; the model was restored")
    except Exception:
        rot.undo()
        raise
    rot.record = {"method": "slicegpt", "width": stream.width, "exact_rel_error": error,
                  "norms": [{"path": n.path, "a": n.a, "b": n.b, "consumers": n.consumers} for n in stream.norms],
                  "untied": rot._config is not None, **extra,
                  "calibration": {"batches": first.batches, "tokens": first.tokens}}
    return rot


def _float_dtype(model: nn.Module) -> torch.dtype:
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def max_relative_error(reference: list[torch.Tensor], outputs: list[torch.Tensor]) -> float:
    """Largest absolute difference of any floating output, relative to that output's largest value (as verify)."""
    worst = 0.0
    for a, b in zip(reference, outputs, strict=True):
        if a.is_floating_point() and a.numel():
            scale = max(float(a.abs().max()), 1e-6)
            worst = max(worst, float((a.double() - b.double()).abs().max()) / scale)
    return worst


def check_rotated(model: nn.Module, plan: Plan) -> None:
    """A plan made on a rotated model fits only a rotated model: its folded norms must scale by 1 everywhere."""
    rec = plan.settings.get("rotation")
    if not isinstance(rec, dict):
        return
    for n in rec["norms"]:
        w = model.get_parameter(f"{n['path']}.weight").detach().double()
        if not torch.allclose(n["a"] * w + n["b"], torch.ones_like(w), atol=1e-5):
            raise ApplyError(f"this plan was made on a rotated model (rotate=True) but {n['path']} is not folded: "
                             "replan on this model with sc.plan(model, x, plan.config, calibration=...), which "
                             "rotates it first, or use sc.prune(..., rotate=True)")


def finish_slice_(model: nn.Module, plan: Plan) -> None:
    """After a rotated model's hidden size went from D to d: every folded norm scales by sqrt(D / d)."""
    rec = plan.settings.get("rotation")
    if not isinstance(rec, dict):
        return
    width = int(rec["width"])
    with torch.no_grad():
        for n in rec["norms"]:
            norm = Norm(n["path"], n["a"], n["b"])
            weight = model.get_parameter(f"{norm.path}.weight")
            scale = math.sqrt(width / weight.shape[0])
            weight.copy_(norm.weight_for(torch.full_like(weight, scale, dtype=torch.float64)).to(weight.dtype))
            rec["norm_scale"] = scale


class PrincipalAxesScores:
    """Scores of a rotated model: the hidden-size group by the eigenvalue of each axis (low variance goes first),
    every other group by the criterion the config names."""

    def __init__(self, base: Any, group: Group, eigenvalues: torch.Tensor):
        self.base = base
        self.members = {(m.fqn, m.dim) for m in group.members}
        self.eigenvalues = eigenvalues.double().cpu().numpy()

    def scores(self, group: Group, ctx: Any) -> np.ndarray:
        if {(m.fqn, m.dim) for m in group.members} >= self.members:  # per-layer: the shortcuts join the group
            return self.eigenvalues.copy()
        return self.base.scores(group, ctx)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base, name)


def kept_variance(rotation: Rotation, plan: Plan) -> float:
    """The fraction of the normalised stream's second moment on the axes the plan keeps."""
    members = {(m.fqn, m.dim) for m in rotation.stream.group.members}
    removed: list[int] = []
    for g in plan.groups:
        if {(f, d) for f, d in g.members} >= members:
            removed = list(g.removed)
    values = rotation.eigenvalues
    total = float(values.sum())
    return 1.0 - float(values[removed].sum()) / total if total > 0 else 1.0

