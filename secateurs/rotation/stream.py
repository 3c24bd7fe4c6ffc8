"""The residual stream of a model as rotation sees it: the tensors that carry it, its RMS norms and what reads them.

The hidden-size group of the analysis (the channels group tagged ``residual``) lists every (parameter, dim) on the
stream: embeddings and the Linears that write to it (``o_proj``, ``down_proj``) or read it (``q/k/v``,
``gate/up``, the LM head), and the norm scales. A norm qualifies when it is an RMS norm with an affine scale
(``y = x / rms(x) * (a * weight + b)``; Llama ``weight``, Gemma ``1 + weight``), found by probing the module, and
when every use of its output, through dtype casts and views, is a Linear in the captured graph: its scale then
folds into those Linears' input columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from secateurs.errors import PlanError
from secateurs.graph.analysis import Analysis
from secateurs.graph.capture import Captured, Ref, refs_in
from secateurs.graph.groups import Group

#: ops that pass a tensor on unchanged along its last dim
PASS_THROUGH = frozenset({"aten.to.dtype", "aten._to_copy.default", "aten.alias.default", "aten.clone.default",
                          "aten.contiguous.default", "aten.slice.Tensor", "aten.detach.default", "aten.to.dtype_layout",
                          "aten.dropout.default", "aten.view.default", "aten.reshape.default", "aten.flatten.using_ints"})
IGNORED_USERS = frozenset({"aten._assert_tensor_metadata.default", "aten.sym_size.int"})


@dataclass
class Norm:
    """An RMS norm on the stream: ``effective scale = a * weight + b`` (a, b scalars found by probing)."""

    path: str
    a: float
    b: float
    consumers: list[str] = field(default_factory=list)  # FQNs of Linear weights reading the norm's output

    def weight_for(self, scale: torch.Tensor) -> torch.Tensor:
        return (scale - self.b) / self.a


@dataclass
class Stream:
    """The hidden-size group, its members (FQN, dim) and its norms."""

    group: Group
    members: list[tuple[str, int]]
    norms: list[Norm]

    @property
    def width(self) -> int:
        return self.group.n_units

    def norm_weights(self) -> set[str]:
        return {f"{n.path}.weight" for n in self.norms}


def hidden_group(analysis: Analysis) -> Group:
    found = [g for g in analysis.groups if g.kind == "channels" and "residual" in g.tags]
    if not found:
        raise PlanError("rotate=True needs a residual stream (a hidden size summed across blocks), and this model has no "
                        "prunable one; check analyze(model, x).summary() for what froze it")
    best = max(found, key=lambda g: len(g.members))
    for m in best.members:
        idx = best.unit_index[m.cls]
        if idx.shape[1] != 1 or not np.array_equal(idx[:, 0], np.arange(best.n_units)):
            raise PlanError(f"rotate=True: {m.fqn}[dim {m.dim}] does not map the hidden units one to one; the "
                            "rotation needs every stream tensor indexed by the same hidden channel")
    return best


def _probe(module: nn.Module, width: int, weight: nn.Parameter, value: float) -> torch.Tensor:
    """The effective scale of ``module`` with its weight set to ``value``: its output for a large constant input."""
    saved = weight.detach().clone()
    try:
        with torch.no_grad():
            weight.fill_(value)
            x = torch.full((1, width), 1000.0, dtype=weight.dtype, device=weight.device)
            return module(x).detach().to(torch.float64).reshape(-1)
    finally:
        with torch.no_grad():
            weight.copy_(saved)


def probe_norm(module: nn.Module, path: str) -> Norm:
    """Check ``module`` is an RMS norm with an affine per-channel scale and return that scale's form."""
    weight = module._parameters.get("weight")
    extra = [n for n, p in module.named_parameters() if n != "weight" and p is not None]
    if weight is None or weight.ndim != 1 or extra:
        raise PlanError(f"rotate=True: {path} ({type(module).__name__}) sits on the residual stream but is not an RMS "
                        "norm with a single scale vector (LayerNorm with a bias is not supported: SliceGPT first "
                        "rewrites LayerNorm as RMSNorm, which secateurs does not do yet)")
    width = weight.shape[0]
    with torch.no_grad():
        b = _probe(module, width, weight, 0.0)
        a = _probe(module, width, weight, 1.0) - b
        g = torch.Generator().manual_seed(0)
        x = torch.randn(4, width, generator=g, dtype=torch.float64) + 3.0
        want = x / x.pow(2).mean(-1, keepdim=True).sqrt() * (a * weight.detach().double() + b)
        got = module(x.to(weight.dtype)).double()
    ok = (a.std() < 1e-3 * a.abs().mean() and b.std() <= 1e-3 * max(float(b.abs().mean()), 1.0)
          and float(a.abs().mean()) > 1e-6 and torch.allclose(got, want, rtol=1e-3, atol=1e-3))
    if not ok:
        raise PlanError(f"rotate=True: {path} ({type(module).__name__}) is not an RMS norm (x / rms(x) * scale): it "
                        "centres or otherwise changes its input, so the stream cannot be rotated through it")
    return Norm(path, float(a.mean()), float(b.mean()))


def _users(captured: Captured) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for node in captured.nodes:
        for ref in refs_in((node.args, node.kwargs)):
            out.setdefault(ref.name, []).append(node)
    return out



def _output_node(captured: Captured, path: str) -> Any:
    inside = [n for n in captured.nodes if n.kind == "call" and n.module_path == path
              and isinstance(n.value, torch.Tensor) and n.target not in IGNORED_USERS]
    if not inside:
        raise PlanError(f"rotate=True: no operation of {path} in the captured graph (is the norm used by forward?)")
    return inside[-1]


def consumers(captured: Captured, path: str) -> list[str]:
    """FQNs of the Linear weights that read the output of the norm at ``path`` (and nothing else does)."""
    users = _users(captured)
    start = _output_node(captured, path)
    found: list[str] = []
    stack, seen = [start.name], {start.name}
    while stack:
        name = stack.pop()
        for user in users.get(name, []):
            if user.target in IGNORED_USERS or user.module_path == path:
                continue
            if user.target in PASS_THROUGH and user.name not in seen:
                seen.add(user.name)
                stack.append(user.name)
            elif user.target == "aten.linear.default" and isinstance(user.args[0], Ref) and user.args[0].name == name:
                weight = user.args[1]
                fqn = captured.state_inputs.get(weight.name) if isinstance(weight, Ref) else None
                if fqn is None:
                    raise PlanError(f"rotate=True: the output of {path} feeds {user.where()}, whose weight is not a "
                                    "parameter; its scale cannot be folded into it")
                found.append(fqn)
            elif user.target not in PASS_THROUGH:
                raise PlanError(f"rotate=True: the output of {path} feeds {user.where()}, not only Linear layers; its "
                                "scale cannot be folded away, so the stream cannot be rotated through it")
    if not found:
        raise PlanError(f"rotate=True: the output of {path} reaches no Linear layer")
    return sorted(set(found))


def find_stream(model: nn.Module, analysis: Analysis) -> Stream:
    group = hidden_group(analysis)
    modules = dict(model.named_modules())
    members = [(m.fqn, m.dim) for m in group.members]
    norms = []
    for fqn, _ in members:
        path, _, attr = fqn.rpartition(".")
        module = modules.get(path)
        if module is None or isinstance(module, (nn.Linear, nn.Embedding)):
            continue
        if attr != "weight":
            raise PlanError(f"rotate=True: {fqn} is on the residual stream but is neither a Linear/Embedding tensor "
                            "nor an RMS norm scale, so the stream cannot be rotated")
        norm = probe_norm(module, path)
        norm.consumers = consumers(analysis.coupled.captured, path)
        norms.append(norm)
    if not norms:
        raise PlanError("rotate=True: no RMS norm reads the residual stream; SliceGPT rotates pre-norm transformers")
    return Stream(group, members, norms)
