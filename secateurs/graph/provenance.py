"""Numbers that remember where they came from: module attributes and tensor sizes, through Python arithmetic.

While a model is captured (``secateurs.graph.tracking``), every int, float and tuple-of-int attribute of its modules
is swapped for a :class:`SizeInt` / :class:`SizeFloat` whose :class:`Expr` names it (:class:`Attr`), and every tensor
size that ``forward()`` reads (``x.shape``, ``x.size(1)``) is one naming that dimension of a graph node (:class:`Dim`).
Arithmetic keeps the record (``self.num_heads * self.head_dim`` is ``Op("mul", (Attr, Attr))``), so the sizes that
reach an op (``reshape(B, N, 3, self.num_heads, C // self.num_heads)``) say how each was computed.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Union


@dataclass(frozen=True)
class Attr:
    """A module attribute, or element ``index`` of a tuple/list attribute."""

    owner: str  # module path ("" for the root)
    name: str
    index: int | None = None

    def __str__(self) -> str:
        path = f"{self.owner}.{self.name}" if self.owner else self.name
        return path if self.index is None else f"{path}[{self.index}]"


@dataclass(frozen=True)
class Dim:
    """Dimension ``dim`` of output ``output`` of a graph node, as ``forward()`` read it (``x.shape[dim]``)."""

    node: str
    output: int
    dim: int

    def __str__(self) -> str:
        return f"{self.node}.shape[{self.dim}]"


@dataclass(frozen=True)
class Const:
    value: int | float

    def __str__(self) -> str:
        return repr(self.value)


@dataclass(frozen=True)
class Op:
    name: str  # a key of OPS
    args: tuple[Expr, ...]

    def __str__(self) -> str:
        if len(self.args) == 1:
            return f"{self.name}({self.args[0]})"
        return f"({self.args[0]} {_SYMBOL.get(self.name, self.name)} {self.args[1]})"


Expr = Union[Attr, Dim, Const, Op]  # noqa: UP007  (a runtime alias: isinstance checks and dataclass fields)
Leaf = Union[Attr, Dim]  # noqa: UP007

OPS: dict[str, Callable[..., Any]] = {
    "add": operator.add, "sub": operator.sub, "mul": operator.mul, "floordiv": operator.floordiv,
    "truediv": operator.truediv, "mod": operator.mod, "pow": operator.pow, "neg": operator.neg, "abs": abs,
    "max": max, "min": min, "ceil": math.ceil, "floor": math.floor, "int": int,
}
_SYMBOL = {"add": "+", "sub": "-", "mul": "*", "floordiv": "//", "truediv": "/", "mod": "%", "pow": "**"}


def evaluate(expr: Expr, value: Callable[[Leaf], int | float]) -> Any:
    """The value of ``expr`` with every leaf at ``value(leaf)``; raises ArithmeticError/ValueError when it has none."""
    if isinstance(expr, Const):
        return expr.value
    if isinstance(expr, (Attr, Dim)):
        return value(expr)
    return OPS[expr.name](*(evaluate(a, value) for a in expr.args))


def leaves(expr: Expr) -> set[Leaf]:
    if isinstance(expr, (Attr, Dim)):
        return {expr}
    if isinstance(expr, Op):
        return set().union(*(leaves(a) for a in expr.args))
    return set()


def expr_of(value: Any) -> Expr:
    tracked = getattr(value, "expr", None)
    return tracked if isinstance(tracked, (Attr, Dim, Const, Op)) else Const(value)


def is_tracked(value: Any) -> bool:
    return isinstance(value, (SizeInt, SizeFloat))


def _wrap(result: Any, expr: Expr) -> Any:
    if isinstance(result, bool) or result is NotImplemented:
        return result
    if isinstance(result, int):
        return SizeInt(result, expr)
    if isinstance(result, float):
        return SizeFloat(result, expr)
    return result


def _binary(name: str, reflected: bool = False) -> Callable[[Any, Any], Any]:
    fn = OPS[name]

    def method(self: Any, other: Any) -> Any:
        if not isinstance(other, (int, float)):
            return NotImplemented
        plain_self, plain_other = self._plain(), other._plain() if isinstance(other, _Tracked) else other
        try:
            result = fn(plain_other, plain_self) if reflected else fn(plain_self, plain_other)
        except TypeError:
            return NotImplemented
        args = (expr_of(other), self.expr) if reflected else (self.expr, expr_of(other))
        return _wrap(result, Op(name, args))

    return method


def _unary(name: str) -> Callable[[Any], Any]:
    fn = OPS[name]

    def method(self: Any) -> Any:
        return _wrap(fn(self._plain()), Op(name, (self.expr,)))

    return method


class _Tracked:
    expr: Expr

    def _plain(self) -> Any:
        raise NotImplementedError

    def __reduce__(self) -> Any:  # copies and pickles of a tracked value are plain numbers
        return (type(self._plain()), (self._plain(),))


for _name in ("add", "sub", "mul", "floordiv", "truediv", "mod", "pow"):
    setattr(_Tracked, f"__{_name}__", _binary(_name))
    setattr(_Tracked, f"__r{_name}__", _binary(_name, reflected=True))
for _name in ("neg", "abs"):
    setattr(_Tracked, f"__{_name}__", _unary(_name))
_Tracked.__ceil__ = _unary("ceil")  # type: ignore[attr-defined]
_Tracked.__floor__ = _unary("floor")  # type: ignore[attr-defined]


class SizeInt(_Tracked, int):
    """An int that carries the :class:`Expr` it was computed from."""

    def __new__(cls, value: int, expr: Expr) -> SizeInt:
        obj = int.__new__(cls, value)
        obj.expr = expr
        return obj

    def _plain(self) -> int:
        return int.__int__(self)

    def __pos__(self) -> SizeInt:
        return self


class SizeFloat(_Tracked, float):
    """A float that carries the :class:`Expr` it was computed from (a softmax scale from a head width)."""

    def __new__(cls, value: float, expr: Expr) -> SizeFloat:
        obj = float.__new__(cls, value)
        obj.expr = expr
        return obj

    def _plain(self) -> float:
        return float.__float__(self)

    def __pos__(self) -> SizeFloat:
        return self


def tracked(value: Any, leaf: Leaf) -> Any:
    """``value`` (an int, a float, or a tuple/list of them) with each number tracked as ``leaf`` (element ``i`` of a
    sequence as ``Attr(owner, name, i)``); None when it holds anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return SizeInt(value, leaf)
    if isinstance(value, float) and math.isfinite(value):
        return SizeFloat(value, leaf)
    if isinstance(value, (tuple, list)) and value and isinstance(leaf, Attr) and leaf.index is None and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value) and type(value) in (tuple, list):
        return type(value)(SizeInt(v, Attr(leaf.owner, leaf.name, i)) for i, v in enumerate(value))
    return None
