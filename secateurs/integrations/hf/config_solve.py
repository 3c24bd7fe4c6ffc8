"""New config field values that make a class build with the pruned sizes: a log-linear solve over the probes.

Sizes in modeling code are products and quotients of config fields (``num_heads * head_dim``,
``hidden_size // num_attention_heads``), so in logarithms each observed size is linear in the fields:
``log(size) = sum_f e_f * log(field_f) + c`` with exponents ``e_f`` read from the doubled-field probes
(``Sensitivity``). The pruned model gives the target sizes (tensor dims, and the module attributes surgery
changed); the smallest set of fields whose change explains every target exactly, with whole-number values,
is the answer. Sizes that are not such monomials (a fused ``(heads + 2 * kv_heads) * head_dim``) are not
used to solve; the rebuild check that follows still compares them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np

from secateurs.integrations.hf.config_discovery import Observed, Sensitivity

MAX_SUBSET = 4


@dataclass
class Solution:
    values: dict[str, int | float] = field(default_factory=dict)  # config path -> new value (only those that change)
    problems: list[str] = field(default_factory=list)
    alternatives: list[dict[str, int | float]] = field(default_factory=list)  # every exact solution, best first


def observables(obs: Observed) -> dict[str, int]:
    """Every size of one build: ``name[dim]`` per tensor dim, ``module:attr`` per integer attribute."""
    out = {f"{name}[{d}]": int(n) for name, shape in obs.shapes.items() for d, n in enumerate(shape)}
    out.update(obs.ints)
    return out


def _exponent(base: int, probed: int, ratio: float) -> float | None:
    """``e`` with ``probed / base == ratio ** e``; None when a size is not positive."""
    if base <= 0 or probed <= 0:
        return None if base != probed else 0.0
    return math.log(probed / base) / math.log(ratio)


def _columns(sens: Sensitivity, keys: list[str]) -> dict[str, np.ndarray]:
    """Field path -> exponents over ``keys`` (NaN where a size is not a monomial of that field)."""
    base = observables(sens.base)
    cols: dict[str, np.ndarray] = {}
    for path, (new_value, seen) in sens.probes.items():
        probe = observables(seen)
        ratio = new_value / sens.values[path]
        col = np.zeros(len(keys))
        for i, k in enumerate(keys):
            e = _exponent(base[k], probe.get(k, base[k]), ratio)
            col[i] = np.nan if e is None or abs(2 * e - round(2 * e)) > 1e-6 else round(2 * e) / 2
        if np.any(col != 0):
            cols[path] = col
    return cols


def solve(sens: Sensitivity, target: dict[str, int], kept_floats: Collection[str] = ()) -> Solution:
    """Field values under which every size in ``target`` (keys of ``observables``) takes its target value.

    Every tensor dim the candidate fields set, and every module attribute surgery changed, must match. Module
    attributes surgery left alone may be stale (no handler refreshed them; ``config_sync`` does) or right: among
    the exact solutions, those that would move the fewest of them come first, then those changing fewer fields
    (``Solution.values`` is the first; ``alternatives`` all, in that order). ``kept_floats``: float attributes the
    pruned model keeps at their old value (a softmax scale from the unpruned head size); fields whose change would
    move one of them give no solution, since a fresh build would differ (Evolla: ``head_dim = 18`` also gives the
    pruned query width, but it rescales the attention scores; ``num_attention_heads = 6`` rescales its adapter's)."""
    base = observables(sens.base)
    changed = {k: v for k, v in target.items() if k in base and base[k] != v}
    if not changed:
        return Solution()
    keys = sorted(base)
    index = {k: i for i, k in enumerate(keys)}
    cols = _columns(sens, keys)
    unexplained = [k for k in changed if not any(c[index[k]] != 0 for c in cols.values())]
    if unexplained:
        return Solution(problems=[f"no config field sets {_show(unexplained)}"])
    candidates = [group for group in _aliases(cols) if any(cols[group[0]][index[k]] != 0 for k in changed)]
    a_all = np.stack([cols[g[0]] for g in candidates], axis=1)  # keys x candidates (NaN: not a monomial)
    b_all = np.array([math.log(target.get(k, base[k]) / base[k]) if base[k] > 0 and target.get(k, base[k]) > 0
                      else 0.0 for k in keys])
    is_attr = np.array([":" in k for k in keys])
    is_changed = np.array([k in changed for k in keys])
    kept = set(kept_floats)
    movers = [{k for k, v in sens.probes[g[0]][1].floats.items() if k in kept and sens.base.floats.get(k) != v}
              for g in candidates]
    found, rejected = _search_subsets(sens, candidates, a_all, b_all, is_attr, is_changed, movers)
    if found:
        found.sort(key=lambda item: (item[0], item[1]))
        return Solution(found[0][2], alternatives=[values for _, _, values in found])
    if rejected is not None:
        fields = ", ".join(f"{k}={v}" for k, v in sorted(rejected[0].items()))
        return Solution(problems=[f"the config fields that give the pruned sizes ({fields}) would also change "
                                  f"{', '.join(rejected[1][:2])}, which the pruned model keeps (a fresh build "
                                  "recomputes it from the new value)"])
    rows = [i for i in range(len(keys)) if np.isfinite(a_all[i]).all() and (is_changed[i] or (
        not is_attr[i] and (a_all[i] != 0).any()))]
    conflict = _conflict(a_all[rows], b_all[rows], [keys[r] for r in rows], [g[0] for g in candidates], base, target)
    if conflict:
        return Solution(problems=[conflict])
    sizes = ", ".join(f"{k}: {base[k]} -> {changed[k]}" for k in sorted(changed)[:3])
    return Solution(problems=[f"no whole-number values of the config fields "
                              f"{', '.join(g[0] for g in candidates[:6])} give the pruned sizes ({sizes}"
                              f"{f' and {len(changed) - 3} more' if len(changed) > 3 else ''})"])


Found = list[tuple[int, int, dict[str, int | float]]]  # (attributes moved, fields changed, values)


def _search_subsets(sens: Sensitivity, candidates: list[tuple[str, ...]], a_all: np.ndarray, b_all: np.ndarray,
                    is_attr: np.ndarray, is_changed: np.ndarray, movers: list[set[str]]
                    ) -> tuple[Found, tuple[dict[str, int | float], list[str]] | None]:
    """Exact solutions over subsets of up to ``MAX_SUBSET`` candidate fields, smallest subsets first (stopping at
    the first size with one that moves no attribute surgery left alone), and the first answer turned down because a
    fresh build would recompute a kept float (``movers``: per candidate, the kept floats its change moves)."""
    found: Found = []
    rejected: tuple[dict[str, int | float], list[str]] | None = None
    for size in range(1, min(MAX_SUBSET, len(candidates)) + 1):
        for subset in itertools.combinations(range(len(candidates)), size):
            a = a_all[:, subset]
            finite = np.isfinite(a).all(axis=1)
            moved = finite & (a != 0).any(axis=1)
            hard = finite & ((moved & ~is_attr) | is_changed)  # tensor dims they set, attributes surgery changed
            if not (hard & is_changed).any():
                continue
            solved = _try(sens, [candidates[i] for i in subset], a[hard], b_all[hard])
            if solved is None:
                continue
            x, values = solved
            recomputed = set().union(*(movers[i] for i, xi in zip(subset, x.tolist(), strict=True) if abs(xi) > 1e-12))
            if recomputed:  # a fresh build would recompute a float the pruned model keeps: not a solution
                rejected = rejected or (values, sorted(recomputed))
                continue
            soft = moved & is_attr & ~is_changed  # attributes left alone: stale, or right
            found.append((int(np.sum(np.abs(a[soft] @ x) > 1e-9)), size, values))
        if any(v == 0 for v, _, _ in found):
            break
    return found, rejected


def _try(sens: Sensitivity, subset: list[tuple[str, ...]], a: np.ndarray, b: np.ndarray
         ) -> tuple[np.ndarray, dict[str, int | float]] | None:
    x, *_ = np.linalg.lstsq(a, b, rcond=None)
    if np.max(np.abs(a @ x - b), initial=0.0) > 1e-9:
        return None
    values: dict[str, int | float] = {}
    for group, xi in zip(subset, x.tolist(), strict=True):
        old = sens.values[group[0]]
        new = old * math.exp(xi)
        if isinstance(old, float):  # a ratio field: any value; nudged up so int(size * ratio) lands on the size
            if abs(xi) > 1e-12:
                values.update({path: _ratio(new) for joint in group for path in joint.split("+")})
            continue
        if abs(new - round(new)) > 1e-6 * max(new, 1.0) or round(new) < 1:
            return None
        if round(new) != old:
            values.update({path: int(round(new)) for joint in group for path in joint.split("+")})
    return x, values


def _ratio(value: float) -> float:
    """``value`` written with few digits when that is exact enough, a hair above it otherwise: modeling code
    truncates (``int(dim * mlp_ratio)``), and ``dim * value`` computed in floats may fall just below the whole
    size it stands for."""
    short = float(f"{value:.6g}")
    return short if short >= value else float(f"{value * (1 + 1e-9):.12g}")


def _conflict(a: np.ndarray, b: np.ndarray, keys: list[str], fields: list[str], base: dict[str, int],
              target: dict[str, int]) -> str:
    """Two sizes that the same fields set in the same way but that pruning changed differently (self- and
    cross-attention heads under one ``num_heads``; layers pruned to different widths)."""
    seen: dict[bytes, int] = {}
    for i, row in enumerate(a):
        key = row.tobytes()
        j = seen.setdefault(key, i)
        if j != i and abs(b[i] - b[j]) > 1e-9:
            names = [f for f, e in zip(fields, row.tolist(), strict=True) if e != 0]
            show = [f"{k}: {base[k]} -> {target.get(k, base[k])}" for k in (keys[j], keys[i])]
            return (f"config field{'s' if len(names) > 1 else ''} {', '.join(names)} set{'' if len(names) > 1 else 's'}"
                    f" both {show[0]} and {show[1]}, which pruning changed differently; a config holds one value "
                    "per field, so prune every size it sets alike")
    return ""


def _aliases(cols: dict[str, np.ndarray]) -> list[tuple[str, ...]]:
    """Fields with identical exponent columns act as one unknown (and are written together)."""
    groups: dict[bytes, list[str]] = {}
    for path, col in cols.items():
        groups.setdefault(np.nan_to_num(col, nan=7.25).tobytes(), []).append(path)
    return [tuple(g) for g in groups.values()]


def _show(keys: list[str]) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:4]) + (f" (and {len(keys) - 4} more)" if len(keys) > 4 else "")
