"""Count constraints: unit counts a model's own configuration can express, applied to the counts selection chose.

Some models store widths in a config that validates them: transformers' ``LlamaConfig`` rejects
``hidden_size % num_attention_heads != 0``, so keeping 24 of 32 query heads of a Llama-3 would prune, verify
and then fail in ``save_pretrained``. A provider registered for the model's class (``CONSTRAINTS``, found
through the MRO; the Hugging Face one is ``secateurs.integrations.hf.head_counts``) lists, for some groups,
the tuples of kept unit counts the config accepts. ``constrain`` moves every planned tuple that is not among
them to the nearest one that is (relative distance per group; ties keep more units) and says what it changed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from secateurs.graph.groups import Group
from secateurs.plugins import load_integrations
from secateurs.registry import Registry


@dataclass(frozen=True)
class CountConstraint:
    """Kept unit counts of ``groups`` (ids, jointly) that ``where`` can express; ``why`` says what limits them."""

    groups: tuple[int, ...]
    allowed: frozenset[tuple[int, ...]]
    where: str
    why: str


#: ``provider(model, groups, kept, held)`` -> constraints; ``kept`` maps a group id to the units selection keeps;
#: ``held``: module prefixes ("layers.2.") the user keeps out of the width plan (dropped blocks, ignored modules)
Provider = Callable[[nn.Module, Sequence[Group], Mapping[int, int], Sequence[str]], list[CountConstraint]]
CONSTRAINTS: Registry[Provider] = Registry("count constraint provider")


def constraints_for(model: nn.Module, groups: Sequence[Group], kept: Mapping[int, int],
                    held: Sequence[str] = ()) -> list[CountConstraint]:
    load_integrations(model)  # the libraries' providers register when their integration is imported
    provider = CONSTRAINTS.for_type(type(model))
    return provider(model, groups, kept, held) if provider is not None else []


def constrain(model: nn.Module, groups: Sequence[Group], counts: Mapping[int, int],
              held: Sequence[str] = ()) -> tuple[dict[int, int], list[dict[str, Any]]]:
    """``counts`` (group id -> units removed) moved onto counts the model's config accepts, and one record per
    constraint that changed them (module, why, kept counts asked and used)."""
    by_id = {g.id: g for g in groups}
    out = dict(counts)
    kept = {g.id: g.n_units - out.get(g.id, 0) for g in groups}
    changes: list[dict[str, Any]] = []
    for c in constraints_for(model, groups, kept, held):
        ids = [i for i in c.groups if i in by_id]
        if len(ids) != len(c.groups):
            continue
        want = tuple(kept[i] for i in ids)
        fixed = [j for j, i in enumerate(ids) if i not in counts]  # not eligible (ignored, ratio 0): never changed
        options = [k for k in c.allowed if all(k[j] == want[j] for j in fixed)]
        if want in c.allowed or not options:
            continue
        n = [by_id[i].n_units for i in ids]
        best = min(options, key=lambda k: (sum(abs(a - b) / m for a, b, m in zip(k, want, n, strict=True)), -sum(k), k))
        for i, k in zip(ids, best, strict=True):
            out[i] = by_id[i].n_units - k
        changes.append({"where": c.where, "why": c.why, "groups": ids, "kinds": [by_id[i].kind for i in ids],
                        "units": n, "kept_asked": list(want), "kept_used": list(best),
                        "allowed": sorted(list(k) for k in c.allowed)})
    return out, changes


def describe(changes: Sequence[Mapping[str, Any]]) -> str:
    """One sentence for a warning: what was asked, what is used, and why (the first module as the example)."""
    first = changes[0]
    parts = [f"{kind} ratio {(n - asked) / n:.3g} -> {(n - used) / n:.3g} ({used} of {n} kept)"
             for kind, asked, used, n in zip(first["kinds"], first["kept_asked"], first["kept_used"], first["units"],
                                             strict=True) if asked != used]
    more = f" and {len(changes) - 1} more modules alike" if len(changes) > 1 else ""
    return (f"{first['where']}{more}: {first['why']}, so {', '.join(parts)}; the nearest count the config accepts "
            "(plan.settings['count_constraints'] records every change; valid_heads=False keeps the counts asked, "
            "and the pruned model then saves only with secateurs.save)")
