"""Before surgery: can a stock config describe the model a plan will produce? (``stock_config_problems``)

The plan is applied to a copy of the model whose tensors are on the meta device (no memory, no arithmetic);
the config rewrite of ``config_sync`` is computed on that copy, exactly as it will be after the real surgery.
When no config can describe the result, the messages say why and how to get a plan whose result one can
describe. The pruned model is valid either way: ``secateurs.save``/``secateurs.load`` rebuild it.

``stock_config_problems(model, plan)`` is the function a planner can call to test candidate plans; the plan
check registered here (``secateurs.planning.checks``) runs it from ``sc.plan`` and ``sc.prune``.
"""

from __future__ import annotations

import copy
import itertools
import re
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from secateurs.errors import ConfigRewriteError, SecateursError, StockConfigWarning
from secateurs.integrations.hf import config_sync
from secateurs.integrations.hf.config_discovery import observe, sensitivity
from secateurs.integrations.hf.config_solve import observables
from secateurs.planning.checks import PLAN_CHECKS
from secateurs.plans import Plan
from secateurs.surgery.apply import apply_plan

_LAYER = re.compile(r"\.\d+(?=[.:\[])")


def meta_clone(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose parameters and buffers are meta tensors (tied tensors stay tied)."""
    memo: dict[int, Any] = {}
    for t in itertools.chain(model.parameters(), model.buffers()):
        if id(t) in memo:
            continue
        meta = torch.empty_like(t, device="meta")
        memo[id(t)] = nn.Parameter(meta, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else meta
    return copy.deepcopy(model, memo)


def outermost(model: nn.Module) -> PreTrainedModel | None:
    """The ``PreTrainedModel`` nearest the root of ``model`` (``model`` itself when it is one)."""
    for _, m in model.named_modules():
        if isinstance(m, PreTrainedModel):
            return m
    return None


def stock_config_problems(model: nn.Module, plan: Plan) -> list[str]:
    """Why a stock config (``save_pretrained`` -> ``from_pretrained``) cannot describe ``model`` pruned by ``plan``,
    with how to get a plan it can describe; [] when it can (or when the model is not a transformers model)."""
    if outermost(model) is None:
        return []
    clone = meta_clone(model)
    with config_sync.collecting() as found:
        try:
            apply_plan(clone, plan)
        except SecateursError as exc:
            if isinstance(exc.__cause__, ConfigRewriteError):  # refused before any surgery on the real model
                raise exc.__cause__ from None
            return []  # the real surgery will say what is wrong
    problems = [p for rewrite in found for p in rewrite.problems]
    if not problems:
        return []
    pruned = outermost(clone)
    return problems + _how_to(pruned, problems) if pruned is not None else problems


def _how_to(pruned: nn.Module, problems: list[str]) -> list[str]:
    """Ways to a plan whose result a stock config describes."""
    tips = []
    uneven = _uneven(pruned)
    if uneven:
        tips.append(f"a width differs across layers ({uneven}), and a config holds one value per width: prune "
                    "with uniform=True (scope='local', the default) and without per-group overrides")
    if any("multiple of" in p or "divisible" in p for p in problems):
        tips.append("keep the pruned widths divisible as the config requires (round_to= a multiple of the head count "
                    "for the hidden size; a head count that divides the hidden size)")
    derived = _shape_free_fields(pruned)
    if derived:
        tips.append(f"this config derives the head size from other fields ({', '.join(derived)} change no tensor "
                    "shape), so heads pruned without the hidden size, or the hidden size without heads, cannot be "
                    "written: prune both so that hidden = heads x head_dim, or neither")
    tips.append("the pruned model is valid as it is: secateurs.save() and secateurs.load() rebuild it")
    return tips


def _uneven(pruned: nn.Module) -> str:
    """The first per-layer size that pruning changed and whose value differs between layers ("" when none)."""
    try:
        base = observables(sensitivity(type(pruned), getattr(pruned, "config", None)).base)
    except Exception:  # the class does not build on meta: no hint
        return ""
    seen: dict[tuple[str, int], set[int]] = {}  # (size with layer numbers masked, size before) -> sizes after
    changed: set[tuple[str, int]] = set()
    for key, value in observables(observe(pruned)).items():
        pattern = (_LAYER.sub(".#", key), base.get(key, value))
        seen.setdefault(pattern, set()).add(value)
        if base.get(key, value) != value:
            changed.add(pattern)
    for pattern in sorted(changed):
        values = seen[pattern]
        if ".#" in pattern[0] and len(values) > 1:
            return f"{pattern[0]} differs across layers: {min(values)}..{max(values)}"
    return ""


def _shape_free_fields(pruned: nn.Module) -> list[str]:
    """Config fields whose change moves module attributes (a head count) but no tensor shape."""
    config: Any = getattr(pruned, "config", None)
    try:
        sens = sensitivity(type(pruned), config)
    except Exception:  # the class does not build on meta: no hint
        return []
    return [path for path, (_, seen) in sens.probes.items()
            if seen.shapes == sens.base.shapes and seen.ints != sens.base.ints and "head" in path]


def check_plan(model: nn.Module, plan: Plan) -> list[Warning]:
    problems = stock_config_problems(model, plan)
    if not problems:
        return []
    return [StockConfigWarning("before surgery: a stock config cannot describe the pruned model, so its "
                               "save_pretrained() output will not reload with from_pretrained: " + "; ".join(problems))]


PLAN_CHECKS.add(PreTrainedModel, check_plan)
