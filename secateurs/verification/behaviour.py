"""What verification cannot see on its own inputs, found so the report can say so.

* Modules whose ``forward()`` reads ``self.training`` (batch norm, dropout, hand-written variants) behave
  differently in training mode; verification runs in eval mode only.
* A Python branch on a shape (``if x.shape[0] == 1``, a loop over the batch) or on a pruned size
  (``if x.shape[1] == 64``) is traced away by ``torch.export``. The eager runs are recorded op by op (a
  dispatch mode) and counted: the original at two batch sizes, and the pruned model against the original.
  Ops that only change a tensor's layout (views, copies, transposes) are left out, since whether they run
  depends on strides, which a size-1 dimension or a smaller width can change without any branch.
"""

from __future__ import annotations

import collections
import inspect
from typing import Any

from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

_LAYOUT = frozenset({
    "view", "_unsafe_view", "reshape", "_reshape_alias", "clone", "contiguous", "expand", "alias", "t", "transpose",
    "permute", "unsqueeze", "squeeze", "as_strided", "detach", "copy_", "copy", "empty", "empty_like", "empty_strided",
    "_to_copy", "to", "slice", "select", "lift_fresh", "lift_fresh_copy", "split", "split_with_sizes", "chunk",
    "unbind", "_local_scalar_dense", "sym_size", "sym_stride", "sym_numel", "sym_storage_offset", "flatten",
})
# one matrix product can run as mm, bmm, addmm or baddbmm depending on how matmul folds its batch dims
_MATMUL = {"mm": "mm", "bmm": "mm", "addmm": "mm", "baddbmm": "mm", "matmul": "mm"}


class OpTrace(TorchDispatchMode):
    """Records the ATen ops a forward pass runs (layout-only ops left out)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = func.overloadpacket.__name__
        if name not in _LAYOUT:
            self.ops.append(_MATMUL.get(name, name))
        return func(*args, **(kwargs or {}))


def first_difference(a: list[str], b: list[str]) -> str | None:
    """How two runs' ops differ, as text (counts per op: the same ops in another order, e.g. a cached value
    computed later, are no branch); None when they run the same ops."""
    ca, cb = collections.Counter(a), collections.Counter(b)
    if ca == cb:
        return None
    diff = sorted((op, cb[op] - ca[op]) for op in ca.keys() | cb.keys() if ca[op] != cb[op])
    shown = ", ".join(f"{op} {n:+d}" for op, n in diff[:4]) + (f" and {len(diff) - 4} more" if len(diff) > 4 else "")
    return f"{len(a)} vs {len(b)} ops: {shown}"


_READS_TRAINING: dict[type, bool] = {}


def _reads_training(cls: type) -> bool:
    if cls not in _READS_TRAINING:
        _READS_TRAINING[cls] = _source_reads_training(cls)
    return _READS_TRAINING[cls]


def _source_reads_training(cls: type) -> bool:
    forward = getattr(cls, "forward", None)
    try:
        source = inspect.getsource(forward) if forward is not None else ""
    except (OSError, TypeError):
        return False
    return "self.training" in source


def training_dependent(model: nn.Module) -> list[str]:
    """``path (Type)`` of every module whose forward reads ``self.training`` (dropout with p=0 left out)."""
    found = []
    for path, m in model.named_modules():
        if isinstance(m, nn.modules.dropout._DropoutNd) and m.p == 0:
            continue
        if _reads_training(type(m)):
            found.append(f"{path or 'model'} ({type(m).__name__})")
    return found


def training_note(model: nn.Module) -> str | None:
    found = training_dependent(model)
    if not found:
        return None
    more = f" and {len(found) - 3} more" if len(found) > 3 else ""
    return (f"verified in eval mode only: forward() of {len(found)} module(s) reads self.training "
            f"({', '.join(found[:3])}{more}); training-mode outputs were not compared")


def failing_module(model: nn.Module, exc: BaseException) -> str | None:
    """``'path' (Type)`` of the innermost module of ``model`` whose forward() was running when ``exc`` was raised."""
    names = {id(m): path for path, m in model.named_modules()}
    found = None
    tb = exc.__traceback__
    while tb is not None:
        obj = tb.tb_frame.f_locals.get("self")
        if isinstance(obj, nn.Module) and id(obj) in names and tb.tb_frame.f_code.co_name == "forward":
            found = obj
        tb = tb.tb_next
    if found is None:
        return None
    return f"'{names[id(found)] or 'model'}' ({type(found).__name__})"
