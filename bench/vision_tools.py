"""Models and the two pruning tools compared by bench_vision.py.

Torch-Pruning is imported only here, inside ``prune_torch_pruning``; secateurs never depends on it.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

MODELS = ("resnet50", "mobilenet_v2", "vit_b_16", "convnext_tiny", "regnet_y_400mf", "densenet121")
TOOLS = ("secateurs", "torch_pruning")
NUM_CLASSES = 1000


def build_model(name: str) -> nn.Module:
    """The torchvision architecture with its default (random) initialisation, in eval mode."""
    import torchvision

    return torchvision.models.get_model(name, weights=None).eval()


def randomize_constants_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Redraw every floating tensor torchvision initialises to a constant.

    BatchNorm/LayerNorm affine parameters and running statistics, ConvNeXt ``layer_scale`` and
    the ViT class token all start as constants. Left that way, a masked-original check cannot
    tell a correct pruning from one that removed the wrong norm channels, and value matching
    (see checks.py) cannot locate kept indices. Random values keep both checks meaningful.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for fqn, t in list(model.state_dict(keep_vars=True).items()):
            if not t.is_floating_point() or t.numel() < 2 or not bool((t == t.flatten()[0]).all()):
                continue
            noise = torch.randn(t.shape, generator=gen, dtype=t.dtype)
            if fqn.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=gen, dtype=t.dtype) + 0.5)
            elif fqn.endswith("layer_scale"):
                t.copy_(0.5 + 0.1 * noise)
            else:
                t.add_(0.1 * noise)
    return model


def example_input(batch: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(seed))


@dataclass
class Pruned:
    """What one tool produced: the pruned model, its plan+apply time, and how it can be checked."""

    model: nn.Module
    seconds: float
    notes: list[str] = field(default_factory=list)
    verify: Callable[[nn.Module, torch.Tensor], dict[str, Any]] | None = None  # the tool's own check, if any


def prune_secateurs(model: nn.Module, x: torch.Tensor, ratio: float) -> Pruned:
    """``sc.plan`` + ``sc.apply`` (timed), then ``sc.verify`` against the unpruned reference (not timed)."""
    import secateurs as sc

    t0 = time.perf_counter()
    plan = sc.plan(model, x, ratio=ratio, importance="l2")
    sc.apply(model, plan)
    seconds = time.perf_counter() - t0

    def verify(reference: nn.Module, inputs: torch.Tensor) -> dict[str, Any]:
        r = sc.verify(reference, model, plan, inputs)
        return {"ok": r.ok, "mode": r.mode, "rel_error": r.rel_error, "message": r.message,
                "check": "secateurs.verify (masked original where exact; runs/shapes/re-export otherwise)"}

    notes = ["final classifier: not prunable by construction (its output is the model output); no ignore needed"]
    if not plan.exact:
        inexact = sorted({g.inexact_reason for g in plan.groups if g.removed and not g.exact and g.inexact_reason})
        notes.append("inexact groups: " + "; ".join(inexact[:3]))
    return Pruned(model, seconds, notes, verify)


def prune_torch_pruning(model: nn.Module, x: torch.Tensor, ratio: float) -> Pruned:
    """Torch-Pruning as its torchvision example does it (examples/torchvision_models/torchvision_pruning.py).

    - ``BasePruner`` (``MetaPruner`` is its deprecated alias) with ``GroupMagnitudeImportance(p=2)``,
      local (per-layer) ratio, one step;
    - the 1000-way classifier is passed in ``ignored_layers`` (Torch-Pruning would prune it otherwise);
    - ViT: every ``nn.MultiheadAttention`` is registered in ``num_heads`` so channels are removed
      evenly inside each head (heads are kept, head_dim shrinks), and after pruning
      ``model.hidden_dim`` is set by hand from ``conv_proj.out_channels``, because torchvision's
      forward reads that attribute.
    """
    import torch_pruning as tp
    from torchvision.models.vision_transformer import VisionTransformer

    notes: list[str] = []
    t0 = time.perf_counter()
    ignored = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == NUM_CLASSES]
    num_heads = {m: m.num_heads for m in model.modules() if isinstance(m, nn.MultiheadAttention)}
    pruner = tp.pruner.BasePruner(
        model,
        example_inputs=x,
        importance=tp.importance.GroupMagnitudeImportance(p=2),
        pruning_ratio=ratio,
        global_pruning=False,
        iterative_steps=1,
        ignored_layers=ignored,
        num_heads=num_heads,
    )
    pruner.step()
    if isinstance(model, VisionTransformer):
        model.hidden_dim = model.conv_proj.out_channels
        notes.append("manual fix from Torch-Pruning's example: model.hidden_dim = conv_proj.out_channels")
    seconds = time.perf_counter() - t0
    notes.append(f"ignored_layers: {len(ignored)} classifier Linear(out=1000)")
    if num_heads:
        notes.append(f"num_heads registered for {len(num_heads)} MultiheadAttention modules (head_dim pruned, heads kept)")
    return Pruned(model, seconds, notes, None)


PRUNERS: dict[str, Callable[[nn.Module, torch.Tensor, float], Pruned]] = {
    "secateurs": prune_secateurs,
    "torch_pruning": prune_torch_pruning,
}


def fresh_copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).eval()
