"""The one table of compute ops: how many MACs each does, and how it reads as a layer.

Three consumers read it: MAC counting (``graph/counting.py``: the product of tensor sizes), the cost model of
budget targets (``selection/cost.py``: the same products over the index spaces those sizes belong to, so a
plan's MACs follow from the kept fraction of each space) and program taps (``calibration/program_taps.py``:
which argument of ``aten.linear``/``aten.conv2d``... is the weight and which the activation, and the layout of
its channels). A MAC *term* is a list of dimensions ``(tensor, dims)`` whose sizes multiply; an op's MACs are
the sum of its terms. Adding an op touches this file only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from secateurs.graph.capture import OpNode
from secateurs.registry import Registry

#: the tensor a dimension belongs to: ``OUT`` (the node's own output) or an argument (a ``Ref``)
OUT = "out"
Dims = tuple[Any, slice]
Term = list[Dims]


@dataclass(frozen=True)
class Layout:
    """Which activation dim holds channels and which weight dims index them (for calibration hooks)."""

    act_dim: int  # channel dim of the input and output activations
    weight_in: int | None  # weight dim indexing input channels (None: the layer has no input-channel weight dim)
    weight_out: int | None  # weight dim indexing output channels
    per_channel: bool = False  # weight/bias are one value per channel (norm layers)
    records_input: bool = True  # the first input is a float activation worth recording


LINEAR = Layout(act_dim=-1, weight_in=1, weight_out=0)
CONV = Layout(act_dim=1, weight_in=1, weight_out=0)
CONV_T = Layout(act_dim=1, weight_in=0, weight_out=1)
NORM_C = Layout(act_dim=1, weight_in=None, weight_out=0, per_channel=True)
NORM_LAST = Layout(act_dim=-1, weight_in=None, weight_out=0, per_channel=True)
EMBEDDING = Layout(act_dim=-1, weight_in=None, weight_out=1, records_input=False)
CONV_T_LAST = Layout(act_dim=-1, weight_in=0, weight_out=1)  # HF Conv1D: weight (in, out)


@dataclass(frozen=True)
class LayerRead:
    """How a layer op reads its weight: which argument is the weight, which the activation, and the layout."""

    weight_arg: int
    input_arg: int
    layout: Layout


@dataclass(frozen=True)
class OpInfo:
    terms: Callable[[OpNode], list[Term]] | None = None  # MAC terms (None: no MACs counted by formula)
    count: Callable[[Any, OpNode], int] | None = None  # MACs when no space formula exists (einsum); fixed in cost
    layer: LayerRead | None = None  # a layer op of a program (weight held by a module)


def _arg(n: OpNode, i: int) -> Any:
    return n.args[i] if i < len(n.args) else None


_ALL, _FIRST_ON, _LAST = slice(None), slice(1, None), slice(-1, None)


def _conv(n: OpNode) -> list[Term]:
    return [[(OUT, _ALL), (_arg(n, 1), _FIRST_ON)]]


def _conv_t(n: OpNode) -> list[Term]:
    return [[(_arg(n, 0), _ALL), (_arg(n, 1), _FIRST_ON)]]


def _linear(n: OpNode) -> list[Term]:
    return [[(OUT, _ALL), (_arg(n, 0), _LAST)]]


def _matmul(n: OpNode) -> list[Term]:
    a = _arg(n, 1) if n.target.startswith(("aten.addmm", "aten.baddbmm")) else _arg(n, 0)
    return [[(OUT, _ALL), (a, _LAST)]]


def _sdpa(n: OpNode) -> list[Term]:
    q, k = _arg(n, 0), _arg(n, 1)
    head, rows, width = slice(None, -1), slice(-2, -1), slice(-1, None)
    return [[(q, head), (k, rows), (q, width)], [(OUT, head), (k, rows), (OUT, width)]]


def _norm(n: OpNode) -> list[Term]:
    return [[(OUT, _ALL)]]


def _einsum_count(shape_of: Any, n: OpNode) -> int:
    """MACs of an einsum: the product of every letter's size over the output's batch of results."""
    import math

    sizes: dict[str, int] = {}
    terms = str(n.args[0]).replace(" ", "").split("->")[0].split(",")
    for term, op in zip(terms, n.args[1], strict=False):
        letters = term.replace("...", "")
        for letter, size in zip(letters, shape_of(op)[-len(letters):], strict=False):
            sizes[letter] = size
    out = str(n.args[0]).split("->")[-1].strip()
    batch = math.prod(shape_of(OUT, n)) // max(1, math.prod(sizes[c] for c in out if c in sizes))
    return batch * math.prod(sizes.values())


def _conv_info(transpose: bool) -> OpInfo:
    return OpInfo(_conv_t if transpose else _conv, layer=LayerRead(1, 0, CONV_T if transpose else CONV))


OPS: Registry[OpInfo] = Registry("compute op")
for _name, _info in {
    **{f"aten.conv{d}d": _conv_info(False) for d in (1, 2, 3)},
    **{f"aten.conv_transpose{d}d": _conv_info(True) for d in (1, 2, 3)},
    "aten.convolution": OpInfo(_conv),
    "aten.linear": OpInfo(_linear, layer=LayerRead(1, 0, LINEAR)),
    **{op: OpInfo(_matmul) for op in ("aten.addmm", "aten.mm", "aten.bmm", "aten.matmul", "aten.baddbmm")},
    "aten.einsum": OpInfo(count=_einsum_count),
    "aten.scaled_dot_product_attention": OpInfo(_sdpa),
    "aten.batch_norm": OpInfo(_norm, layer=LayerRead(1, 0, NORM_C)),
    "aten._native_batch_norm_legit_no_training": OpInfo(layer=LayerRead(1, 0, NORM_C)),
    "aten.layer_norm": OpInfo(_norm, layer=LayerRead(2, 0, NORM_LAST)),
    "aten.group_norm": OpInfo(_norm, layer=LayerRead(2, 0, NORM_C)),
    "aten.rms_norm": OpInfo(_norm),
    "aten.instance_norm": OpInfo(_norm),
    "aten.embedding": OpInfo(layer=LayerRead(0, 1, EMBEDDING)),
}.items():
    OPS.add(_name, _info)


def op_info(target: str) -> OpInfo | None:
    """The entry of a full op name (``aten.conv2d.default``) or its packet."""
    packet = target.rsplit(".", 1)[0] if target.count(".") >= 2 else target
    return OPS.find(packet)
