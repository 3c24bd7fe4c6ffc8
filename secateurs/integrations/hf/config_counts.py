"""Kept counts the discovered config fields can express, as count constraints for selection.

A stock config holds one value per field, and each pruned size is a product of fields (``config_discovery``,
``config_solve``). Groups whose sizes share a field are tied: Aria's shared experts are ``moe_intermediate_size x
moe_num_shared_experts`` wide and each routed expert ``moe_intermediate_size``, so their kept widths must stay
in that ratio; BERT's query width is ``hidden_size`` (the head size is derived), so with the hidden size kept no
head count but the full one can be written. For every set of groups tied by fields whose asked counts no
whole-number field values give, the counts that can be written are searched (the moving groups keep one common
fraction, the others stay whole; nearest to the asked counts first) and offered as the allowed counts. Nothing
here knows a family: the ties come from rebuilding the class from perturbed configs on the meta device.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from fractions import Fraction

import numpy as np
from torch import nn

from secateurs.graph.groups import Group
from secateurs.integrations.hf.config_discovery import Sensitivity, sensitivity
from secateurs.integrations.hf.config_solve import _columns, observables, solve
from secateurs.integrations.hf.head_counts import head_constraints
from secateurs.selection.constraints import CONSTRAINTS, CountConstraint
from secateurs.selection.select import channel_role

_LAYER = re.compile(r"\.\d+(?=[.:\[])")  # a layer index in a size key, masked to compare layers
MAX_TRIES = 48  # solves per tied set before keeping its groups whole
PER_CLASS = 8  # counts tried per class of alike groups, nearest the request first


@CONSTRAINTS.register("transformers.modeling_utils.PreTrainedModel")
def count_constraints(model: nn.Module, groups: Sequence[Group], kept: Mapping[int, int],
                      held: Sequence[str] = ()) -> list[CountConstraint]:
    """Head counts the config's own ``validate()`` accepts, then counts the discovered fields can express."""
    return head_constraints(model, groups, kept) + tied_constraints(model, groups, kept, held)


def tied_constraints(model: nn.Module, groups: Sequence[Group], kept: Mapping[int, int],
                     held: Sequence[str] = ()) -> list[CountConstraint]:
    """One constraint per set of field-tied groups whose asked counts a stock config cannot express. Sets that
    reach into ``held`` modules (dropped blocks, ignored modules: the user keeps them as they are) are left to the
    plan check, which sees the pruned model."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        return []
    try:
        sens = sensitivity(type(model), config)
    except Exception:  # the class does not build on meta: the plan check says what it can
        return []
    base = observables(sens.base)
    floats = _kept_floats(model, sens)
    sizes = _member_sizes(groups, base)
    changed = [g for g in groups if kept.get(g.id, g.n_units) < g.n_units and sizes.get(g.id)]
    if not changed or not solve(sens, _target(groups, sizes, base, kept), floats).problems:
        return []
    covered = {k for keys in sizes.values() for k, _ in keys}
    out = []
    for tied, has_field in _tied_sets(sens, groups, sizes, base):
        if all(kept.get(g.id, g.n_units) == g.n_units for g in tied):
            continue
        asked = {g.id: kept.get(g.id, g.n_units) for g in tied}
        if _uneven(tied, asked) or _elsewhere(tied, sizes, base, covered, tuple(held)):
            continue  # widths asked to differ per layer: the plan check says what cannot be written
        problems = solve(sens, _target(tied, sizes, base, asked), floats).problems
        if not problems:
            continue
        allowed = _search(sens, tied, sizes, base, asked, floats) if has_field else {tuple(g.n_units for g in tied)}
        first = next(g for g in tied if asked[g.id] < g.n_units)
        where = first.members[0].fqn.rsplit(".", 1)[0]
        why = f"the config cannot hold the asked widths ({problems[0][:300]})"
        out.append(CountConstraint(tuple(g.id for g in tied), frozenset(allowed), where, why))
    return out


def _kept_floats(model: nn.Module, sens: Sensitivity) -> list[str]:
    """Float attributes surgery will keep (a softmax scale from the unpruned head size): those of modules without a
    surgery handler of their own (a handler may recompute one, as Gemma's embedding scale)."""
    from secateurs.surgery.registry import find_handler

    modules = dict(model.named_modules())
    return [k for k in sens.base.floats if (m := modules.get(k.split(":", 1)[0])) is not None
            and find_handler(m) is None]


def _uneven(tied: Sequence[Group], asked: Mapping[int, int]) -> bool:
    """Whether the request treats alike groups (same kind and channel role, same size) differently: widths asked to
    differ per layer (``scope="global"``, overrides, groups of dropped layers left whole). An intermediate width and
    another channel group of the same size answer to different ratios, so they are not alike."""
    seen: dict[tuple[str, str | None, int], int] = {}
    return any(seen.setdefault((g.kind, channel_role(g), g.n_units), asked[g.id]) != asked[g.id] for g in tied)


def _elsewhere(tied: Sequence[Group], sizes: Mapping[int, list[tuple[str, int]]], base: Mapping[str, int],
               covered: set[str], held: tuple[str, ...]) -> bool:
    """Whether a held module (a layer being dropped, an ignored module) has one of the sizes of ``tied`` (same
    names, another layer index) that no group plans: that layer is asked to keep its widths. Sizes no group plans
    outside held modules (a width frozen at a model output, a group left out) are ones the config must keep too,
    so they do not count here: the solve keeps them."""
    if not held:
        return False
    patterns = {_LAYER.sub(".#", k) for g in tied for k, _ in sizes.get(g.id, [])}
    return any(k.startswith(held) and k not in covered and _LAYER.sub(".#", k) in patterns for k in base
               if ":" not in k)


def _member_sizes(groups: Sequence[Group], base: Mapping[str, int]) -> dict[int, list[tuple[str, int]]]:
    """Group id -> (size key, channels one unit removes there) of every member the discovery observes."""
    out: dict[int, list[tuple[str, int]]] = {}
    for g in groups:
        for m in g.members:
            key = f"{m.fqn}[{m.dim}]"
            if key in base:
                out.setdefault(g.id, []).append((key, int(g.unit_index[m.cls].shape[1])))
    return out


def _target(groups: Sequence[Group], sizes: Mapping[int, list[tuple[str, int]]], base: Mapping[str, int],
            kept: Mapping[int, int]) -> dict[str, int]:
    target: dict[str, int] = {}
    for g in groups:
        for key, per_unit in sizes.get(g.id, []):
            target[key] = target.get(key, base[key]) - (g.n_units - kept.get(g.id, g.n_units)) * per_unit
    return target


def _tied_sets(sens: Sensitivity, groups: Sequence[Group], sizes: Mapping[int, list[tuple[str, int]]],
               base: Mapping[str, int]) -> list[tuple[list[Group], bool]]:
    """Groups joined when a config field sets sizes of both (a monomial exponent, not a fused sum), each set with
    whether any field sets its sizes at all."""
    keys = sorted(base)
    index = {k: i for i, k in enumerate(keys)}
    cols = _columns(sens, keys)
    parent = {g.id: g.id for g in groups}

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    set_by_field: set[int] = set()
    for col in cols.values():
        touched = [g.id for g in groups if any(np.isfinite(col[index[k]]) and col[index[k]] != 0
                                                for k, _ in sizes.get(g.id, []))]
        set_by_field.update(touched)
        for other in touched[1:]:
            parent[find(other)] = find(touched[0])
    sets: dict[int, list[Group]] = {}
    for g in groups:
        if sizes.get(g.id):
            sets.setdefault(find(g.id), []).append(g)
    return [(tied, any(g.id in set_by_field for g in tied)) for tied in sets.values()]


def _search(sens: Sensitivity, tied: list[Group], sizes: Mapping[int, list[tuple[str, int]]],
            base: Mapping[str, int], asked: Mapping[int, int], floats: list[str]) -> set[tuple[int, ...]]:
    """Kept counts of ``tied`` that whole-number field values give: the groups the request shrinks keep one common
    fraction ``t`` (each ``n x t`` a whole number of units, at least its minimum), the others stay whole; the
    fractions nearest the request are tried first, and keeping every group whole is always allowed."""
    moving = [g for g in tied if asked[g.id] < g.n_units]
    whole = tuple(g.n_units for g in tied)
    fractions = {Fraction(c, g.n_units) for g in moving for c in range(1, g.n_units)}
    options = []
    for t in fractions:
        counts = {g.id: (g.n_units * t) for g in moving}
        if any(c.denominator != 1 or c < g.min_units for g, c in zip(moving, counts.values(), strict=True)):
            continue
        candidate = {g.id: int(counts.get(g.id, g.n_units)) for g in tied}
        distance = sum(abs(candidate[g.id] - asked[g.id]) / g.n_units for g in moving)
        options.append((distance, -float(t), candidate))
    options.sort(key=lambda o: (o[0], o[1]))
    allowed = {whole}
    for _, _, candidate in options[:MAX_TRIES]:
        if not solve(sens, _target(tied, sizes, base, candidate), floats).problems:
            allowed.add(tuple(candidate[g.id] for g in tied))
            break
    partial = _expressible_part(sens, tied, sizes, base, asked, floats)
    if partial is not None:
        allowed.add(tuple(partial[g.id] for g in tied))
    return allowed


def _expressible_part(sens: Sensitivity, tied: list[Group], sizes: Mapping[int, list[tuple[str, int]]],
                      base: Mapping[str, int], asked: Mapping[int, int], floats: list[str]) -> dict[int, int] | None:
    """Counts for as many kinds of groups as the fields can write, the others whole: the moving groups are taken a
    kind at a time (same unit kind and channel role: every stage's FFN, every layer's heads), largest removal first;
    a kind keeps one common fraction, the one nearest its request that gives whole counts and still solves with the
    kinds taken so far (a derived head size keeps the heads while the FFN, set by a ratio field of its own, is
    pruned; an integer ``mlp_ratio`` keeps the nearest whole multiple). None when no kind can be written."""
    kinds: dict[tuple[str, str | None], list[Group]] = {}
    for g in tied:
        if asked[g.id] < g.n_units:
            kinds.setdefault((g.kind, channel_role(g)), []).append(g)
    order = sorted(kinds.values(), key=lambda gs: -sum((g.n_units - asked[g.id]) * g.unit_size for g in gs))
    counts = {g.id: g.n_units for g in tied}
    taken, tries = False, 0
    for members in order:
        for t in _fractions(members, asked, _field_steps(sens, members, sizes))[:PER_CLASS]:
            if tries >= MAX_TRIES:
                return counts if taken else None
            tries += 1
            trial = {**counts, **{g.id: int(g.n_units * t) for g in members}}
            if not solve(sens, _target(tied, sizes, base, trial), floats).problems:
                counts, taken = trial, True
                break
    return counts if taken else None


def _field_steps(sens: Sensitivity, members: list[Group], sizes: Mapping[int, list[tuple[str, int]]]
                 ) -> list[set[Fraction]]:
    """Per integer field proportional to the members' sizes, the fractions it can give (``mlp_ratio = 4``: 1/4, 2/4,
    3/4): tried beside the plain ones, which may all lie too far from the request."""
    keys = sorted({k for g in members for k, _ in sizes.get(g.id, [])})
    out: list[set[Fraction]] = []
    for path, col in _columns(sens, keys).items():
        value = sens.values.get(path)
        if isinstance(value, int) and 1 < value <= 4096 and np.all(np.isin(col, (0.0, 1.0))) and np.any(col == 1.0):
            out.append({Fraction(v, value) for v in range(1, value)})
    return out


def _fractions(members: list[Group], asked: Mapping[int, int], steps: list[set[Fraction]]) -> list[Fraction]:
    """Fractions below 1 that give every member a whole count of at least its minimum: the plain ``c / n`` nearest
    the mean fraction asked, then the two nearest it of each integer field's ``steps``, then the other plain ones."""
    want = sum(Fraction(asked[g.id], g.n_units) for g in members) / len(members)
    plain = {Fraction(c, n) for n in sorted({g.n_units for g in members}) for c in range(1, n)}

    def usable(options: set[Fraction]) -> list[Fraction]:
        ok = [t for t in options if all((g.n_units * t).denominator == 1 and g.n_units * t >= g.min_units
                                        for g in members)]
        return sorted(ok, key=lambda t: (abs(t - want), -t))

    first = usable(plain)
    stepped = sorted({t for field in steps for t in usable(field)[:2]} - set(first[:1]), key=lambda t: (abs(t - want), -t))
    return first[:1] + stepped + first[1:]
