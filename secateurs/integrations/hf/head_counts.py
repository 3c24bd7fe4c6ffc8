"""Head counts the stock transformers config accepts, as count constraints for selection.

The config is asked, not described: for every (key/value heads, query heads per key/value head) an attention
module could keep, a copy of ``model.config`` gets those counts (and the hidden size the plan keeps) and runs
its own ``validate()``. ``LlamaConfig`` then admits 1, 2, 4 or 8 of Llama-3-8B's 8 key/value groups of 4 query
heads (``hidden_size % num_attention_heads``); configs without such a rule admit every count. Families whose
modeling code derives ``head_dim`` from ``hidden_size // num_attention_heads`` (BERT, GPT-2) are left to the
config sync's warning: their config has no ``head_dim`` field. The counts are written under transformers'
standard names (``num_attention_heads``, ``num_key_value_heads``, ``hidden_size``), which every config maps
to its own field through ``attribute_map`` (GPT-2's ``n_head``); the attention modules' head counts come
from ``Family.heads``. ``config_counts.count_constraints`` (the provider registered for ``PreTrainedModel``)
calls ``head_constraints`` first, then adds the counts the discovered config fields can express.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from secateurs.graph.groups import Group
from secateurs.integrations.hf._common import FAMILIES, Family
from secateurs.selection.constraints import CountConstraint


def head_constraints(model: nn.Module, groups: Sequence[Group], kept: Mapping[int, int]) -> list[CountConstraint]:
    config = getattr(model, "config", None)
    family = FAMILIES.find(getattr(config, "model_type", ""))
    if family is None or getattr(config, "head_dim", None) is None or not hasattr(config, "num_attention_heads"):
        return []  # no family, or head_dim derived from hidden_size // heads: the config sync warns instead
    if _rejection(config, family, {}) is not None:
        return []  # the stock config fails its own checks already: nothing to keep valid
    hidden = _planned_hidden(model, groups, kept)
    verdicts: dict[tuple[int, int], str | None] = {}
    out = []
    for path, m in model.named_modules():
        if not isinstance(m, family.attention):
            continue
        h = family.heads(m)
        if not h.num_key_value_heads or h.num_heads % h.num_key_value_heads:
            continue
        per_kv = h.num_heads // h.num_key_value_heads
        kv = _group(groups, path, "heads", h.num_key_value_heads)
        q = _group(groups, path, "query_heads", per_kv) if per_kv > 1 else None
        if kv is None and q is None:
            continue
        ids = tuple(g.id for g in (kv, q) if g is not None)
        allowed = set()
        for k in range(1, h.num_key_value_heads + 1) if kv is not None else [h.num_key_value_heads]:
            for j in range(1, per_kv + 1) if q is not None else [per_kv]:
                counts = {"num_attention_heads": k * j, "num_key_value_heads": k, "hidden_size": hidden}
                key = (k * j, k)
                if key not in verdicts:
                    verdicts[key] = _rejection(config, family, counts)
                if verdicts[key] is None:
                    allowed.add(tuple(x for x, g in ((k, kv), (j, q)) if g is not None))
        if len(allowed) == (h.num_key_value_heads if kv is not None else 1) * (per_kv if q is not None else 1):
            continue  # every count is fine
        asked = (kept.get(kv.id, kv.n_units) if kv is not None else h.num_key_value_heads,
                 kept.get(q.id, q.n_units) if q is not None else per_kv)
        why = _why(config, verdicts, (asked[0] * asked[1], asked[0]))
        out.append(CountConstraint(ids, frozenset(allowed), path, why))
    return out


def _group(groups: Sequence[Group], path: str, kind: str, n_units: int) -> Group | None:
    prefix = path + "."
    for g in groups:
        if g.kind == kind and g.n_units == n_units and all(m.fqn.startswith(prefix) for m in g.members):
            return g
    return None


def _planned_hidden(model: nn.Module, groups: Sequence[Group], kept: Mapping[int, int]) -> int | None:
    """The hidden size the plan keeps: the kept units of the group holding the input embeddings' width."""
    get = getattr(model, "get_input_embeddings", None)
    emb = get() if callable(get) else None
    weight = getattr(emb, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
        return None  # e.g. ViT's patch embeddings: the config keeps its hidden size
    name = next((n for n, mod in model.named_modules() if mod is emb), None)
    for g in groups:
        if any(m.fqn == f"{name}.weight" and m.dim == 1 for m in g.members) and g.id in kept:
            return int(kept[g.id])
    return int(weight.shape[1])


def _rejection(config: Any, family: Family, counts: Mapping[str, int | None]) -> str | None:
    """Why ``config`` with ``counts`` written into it fails its own validation (None when it passes)."""
    trial = copy.deepcopy(config)
    try:
        for name, value in counts.items():
            if value is not None and hasattr(trial, name):
                setattr(trial, name, value)  # standard names reach the config's own fields via attribute_map
        validate = getattr(trial, "validate", None)
        if callable(validate):
            validate()
    except Exception as exc:  # any error of foreign validation code is a rejection, with its message
        lines = [s.strip() for s in str(exc).strip().splitlines() if s.strip()]
        return lines[-1] if lines else type(exc).__name__
    return None


def _why(config: Any, verdicts: Mapping[tuple[int, int], str | None], asked: tuple[int, int]) -> str:
    ok = sorted({heads for (heads, _), v in verdicts.items() if v is None})
    reason = verdicts.get(asked) or next((v for v in verdicts.values() if v is not None), "")
    return (f"{asked[0]} query heads / {asked[1]} key/value heads are rejected by {type(config).__name__} ({reason}); "
            f"it accepts {', '.join(map(str, ok))} query heads")
