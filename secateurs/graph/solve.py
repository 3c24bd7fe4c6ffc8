"""Attribute values that make forward() compute the pruned sizes: the bindings of ``graph/bindings.py``, inverted.

Each literal element whose expression reads module attributes is a constraint ``expr(attributes, sizes) ==
value after pruning``. Constraints that share attributes are solved together, changing as few attributes as
possible (the others keep their values, so a softmax scale stored as an attribute stays the unpruned one). An
element computed from tensor sizes alone needs nothing when the sizes it reads change with it; one written as a
constant, or one whose constraints no attribute values satisfy, is a *problem*: the plan cannot be applied to
this forward() by rewriting attributes. So is an attribute change that would also alter a number the plan does
not account for (a float computed in forward() from a pruned width, an argument that is not a size).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from secateurs.graph.bindings import Bindings, Element
from secateurs.graph.provenance import Attr, Dim, Leaf, evaluate, leaves
from secateurs.graph.tracking import Number

_MAX_SCAN = 4096


@dataclass
class Solution:
    attributes: dict[str, dict[str, Any]] = field(default_factory=dict)  # module path -> attribute -> new value
    before: dict[str, dict[str, Any]] = field(default_factory=dict)  # module path -> attribute -> value before
    problems: list[dict[str, Any]] = field(default_factory=list)  # sizes no attribute rewrite produces (JSON)


class _Missing(Exception):
    pass


@dataclass
class _Constraint:
    element: Element
    attrs: frozenset[Attr]
    target: int = 0


class Solver:
    """Built once per analysis; ``solve(new_size)`` for each plan, ``new_size(space)`` giving sizes after it."""

    def __init__(self, bindings: Bindings):
        self.b = bindings
        self.elements = [e for e in bindings.elements if e.module not in bindings.handled]
        self.attrs = [frozenset(x for x in leaves(e.expr) if isinstance(x, Attr)) if e.expr is not None
                      else frozenset() for e in self.elements]
        parent: dict[Attr, Attr] = {}

        def find(a: Attr) -> Attr:
            while parent.setdefault(a, a) != a:
                a = parent[a]
            return a

        for attrs in self.attrs:
            ordered = sorted(attrs, key=str)
            for a in ordered:
                parent[find(a)] = find(ordered[0])
        self.component = {a: find(a) for a in parent}
        self.members: dict[Attr, list[int]] = {}  # component -> the elements whose expressions read it
        for i, attrs in enumerate(self.attrs):
            if attrs:
                self.members.setdefault(self.component[next(iter(attrs))], []).append(i)
        bound = {(e.call, e.position) for e in bindings.elements}
        self.other_uses: dict[Attr, list[tuple[int, int]]] = {}  # numbers no literal accounts for, by attribute
        for i, call in enumerate(bindings.calls):
            for p, (_, expr) in enumerate(call.numbers):
                if expr is not None and (i, p) not in bound:
                    for leaf in leaves(expr):
                        if isinstance(leaf, Attr):
                            self.other_uses.setdefault(leaf, []).append((i, p))

    def solve(self, new_size: Callable[[int], int], only: Iterable[int] | None = None) -> Solution:
        """Attribute rewrites for the sizes ``new_size`` gives; ``only``: indices of ``self.elements`` to check
        (with every constraint sharing an attribute with them)."""
        out = Solution()
        picked = range(len(self.elements)) if only is None else sorted(set(only))
        groups: dict[Attr, list[_Constraint]] = {}
        for i in picked:
            e, attrs = self.elements[i], self.attrs[i]
            target = e.multiple * new_size(e.space)
            if attrs:
                groups.setdefault(self.component[next(iter(attrs))], [])
                continue
            if e.expr is None:
                if target != e.written:
                    out.problems.append(_problem(e, target, "unknown", self._candidates(e)))
                continue
            try:
                value = evaluate(e.expr, self._value({}, new_size))
            except _Missing:
                value = e.written  # reads a tensor the graph does not name: judged by whether its size must change
            except (ArithmeticError, ValueError):
                value = None
            if value != target:
                kind = "shape" if any(isinstance(x, Dim) for x in leaves(e.expr)) else "constant"
                out.problems.append(_problem(e, target, kind, self._candidates(e)))
        for root, constraints in groups.items():
            for i in self.members[root]:
                e = self.elements[i]
                constraints.append(_Constraint(e, self.attrs[i], e.multiple * new_size(e.space)))
        for constraints in groups.values():
            self._solve_group(constraints, new_size, out)
        return out

    def _value(self, env: dict[Attr, Number], new_size: Callable[[int], int]) -> Callable[[Leaf], Number]:
        def value(leaf: Leaf) -> Number:
            if isinstance(leaf, Dim):
                space = self.b.dim_space.get(leaf)
                if space is None:
                    raise _Missing(str(leaf))
                return new_size(space)
            if leaf in env:
                return env[leaf]
            if leaf not in self.b.values:
                raise _Missing(str(leaf))
            return self.b.values[leaf]

        return value

    def _holds(self, c: _Constraint, env: dict[Attr, Number], new_size: Callable[[int], int]) -> bool:
        try:
            return bool(evaluate(c.element.expr, self._value(env, new_size)) == c.target)  # type: ignore[arg-type]
        except (_Missing, ArithmeticError, ValueError, TypeError):
            return False

    def _solve_group(self, constraints: list[_Constraint], new_size: Callable[[int], int], out: Solution) -> None:
        violated = [c for c in constraints if not self._holds(c, {}, new_size)]
        if not violated:
            return
        candidates = list(dict.fromkeys(a for c in violated for a in sorted(c.attrs, key=str)
                                        if isinstance(self.b.values.get(a), int)))
        for size in range(1, min(3, len(candidates)) + 1):
            for subset in itertools.combinations(candidates, size):
                env = self._propagate(constraints, set(subset), new_size)
                if env is None or not all(self._holds(c, env, new_size) for c in constraints):
                    continue
                changed = {a: v for a, v in env.items() if v != self.b.values[a]}
                conflicts = self._other_uses(changed, new_size)
                if conflicts:
                    out.problems.extend(_problem(c.element, c.target, "other use", conflicts) for c in violated)
                    return
                self._write(changed, out)
                return
        for c in violated:
            out.problems.append(_problem(c.element, c.target, "unsolved", self._candidates(c.element)))

    def _propagate(self, constraints: list[_Constraint], unknown: set[Attr],
                   new_size: Callable[[int], int]) -> dict[Attr, Number] | None:
        """Solve the constraints with exactly one unknown attribute, one at a time, until none is left."""
        env: dict[Attr, Number] = {}
        progress = True
        while unknown and progress:
            progress = False
            for c in constraints:
                free = c.attrs & unknown
                if len(free) != 1:
                    continue
                attr = next(iter(free))
                x = self._invert(c, attr, env, new_size)
                if x is None:
                    return None
                env[attr] = x
                unknown.discard(attr)
                progress = True
        return None if unknown else env

    def _invert(self, c: _Constraint, attr: Attr, env: dict[Attr, Number],
                new_size: Callable[[int], int]) -> int | None:
        """An integer value of ``attr`` for which ``c`` holds, the one nearest a linear guess or the old value."""
        old = int(self.b.values[attr])

        def f(x: int) -> Number | None:
            try:
                return evaluate(c.element.expr, self._value({**env, attr: x}, new_size))  # type: ignore[arg-type]
            except (_Missing, ArithmeticError, ValueError, TypeError):
                return None

        guesses: list[int] = []
        for step in (1, max(1, old)):
            f0, f1 = f(old), f(old + step)
            if f0 is not None and f1 is not None and f1 != f0:
                guess = old + (c.target - f0) * step / (f1 - f0)
                guesses += [round(guess) + d for d in (0, -1, 1)]
        for x in guesses:
            if x >= 0 and f(x) == c.target:
                return x
        for d in range(_MAX_SCAN):
            for x in (old - d, old + d) if d else (old,):
                if x >= 0 and f(x) == c.target:
                    return x
        return None

    def _other_uses(self, changed: dict[Attr, Number], new_size: Callable[[int], int]) -> list[str]:
        """Numbers passed to torch calls (not literal sizes) that the attribute change would alter."""
        found = []
        for attr in changed:
            for i, p in self.other_uses.get(attr, []):
                call = self.b.calls[i]
                value, expr = call.numbers[p]
                try:
                    after = evaluate(expr, self._value(changed, new_size))  # type: ignore[arg-type]
                    before = evaluate(expr, self._value({}, new_size))  # type: ignore[arg-type]
                except (_Missing, ArithmeticError, ValueError, TypeError):
                    continue
                if after != before:
                    found.append(f"{call.func}(...) also takes {expr} = {value!r}, which would become {after!r}")
        return found

    def _write(self, changed: dict[Attr, Number], out: Solution) -> None:
        for attr, value in changed.items():
            old = self.b.originals[(attr.owner, attr.name)]
            new = out.attributes.setdefault(attr.owner, {})
            if attr.index is None:
                new[attr.name] = value
            else:
                new.setdefault(attr.name, list(old))[attr.index] = value
            out.before.setdefault(attr.owner, {})[attr.name] = old

    def _candidates(self, e: Element) -> list[str]:
        """Attributes of the op's module (and its parents) that hold the value as written: where it may come from."""
        found = []
        for (owner, name), value in self.b.originals.items():
            if not (e.module == owner or e.module.startswith(owner + ".") or not owner):
                continue
            values = value if isinstance(value, list) else [value]
            if any(type(v) is int and v and e.written % v == 0 and e.written // v <= 64 for v in values):
                found.append(f"{owner + '.' if owner else ''}{name}={value}")
        return found[:8]


def _problem(e: Element, target: int, kind: str, detail: list[str]) -> dict[str, Any]:
    return {"node": e.node, "op": e.op, "module": e.module, "arg": f"{e.key}[{e.index}]", "before": e.written,
            "after": target, "kind": kind, "expr": None if e.expr is None else str(e.expr), "detail": detail}


KINDS = {
    "unknown": "not among the numbers forward() passed to the op (computed inside torch)",
    "constant": "written as a constant in forward()",
    "shape": "computed from tensor sizes that do not change with it",
    "unsolved": "no attribute values give every pruned size",
    "other use": "rewriting the attribute would also change other numbers forward() uses",
}
