"""Record, while ``torch.export`` traces a model, how the numbers written into each graph node were computed.

For the duration of the capture every int/float/tuple-of-int attribute of the model's modules is a tracked number
(``secateurs.graph.provenance``) and a ``TorchFunctionMode`` watches every torch call ``forward()`` makes: sizes read
from a tensor come back tracked as that dimension of the tensor's graph node, and the numbers passed to a call are
stored, with what they were computed from, under the graph node(s) the call created. Nothing about the capture
changes: tracked numbers are ints and floats, and the call runs as it would.

This is the one module that reads the tracer's internals (the proxy mode and its graph, the proxy of a tensor);
if they are missing or fail, nothing is recorded and pruning falls back to what hand-written handlers refresh.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from types import GetSetDescriptorType
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from secateurs.graph.provenance import Attr, Dim, Expr, Op, SizeInt, expr_of, is_tracked, tracked

Number = int | float


@dataclass(frozen=True)
class Call:
    """One torch call of ``forward()``: its name and every number among its arguments, in order, with the
    expression each was computed from (None: a plain number, e.g. written in the code)."""

    func: str
    numbers: tuple[tuple[Number, Expr | None], ...]


def _numbers(obj: Any, out: list[tuple[Number, Expr | None]]) -> None:
    if isinstance(obj, (torch.Tensor, str, bool)) or obj is None:
        return
    if isinstance(obj, (int, float)):
        out.append((obj._plain() if is_tracked(obj) else obj, expr_of(obj) if is_tracked(obj) else None))  # type: ignore[union-attr]
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            _numbers(item, out)
    elif isinstance(obj, slice):
        for item in (obj.start, obj.stop, obj.step):
            _numbers(item, out)
    elif isinstance(obj, dict):
        for item in obj.values():
            _numbers(item, out)


def _tracer_graph() -> torch.fx.Graph | None:
    try:
        from torch.fx.experimental.proxy_tensor import get_proxy_mode

        mode = get_proxy_mode()
        return None if mode is None else mode.tracer.graph
    except Exception:
        return None


def _node_of(tensor: torch.Tensor) -> torch.fx.Node | None:
    try:
        from torch.fx.experimental.proxy_tensor import get_proxy_mode, get_proxy_slot

        mode = get_proxy_mode()
        return None if mode is None else get_proxy_slot(tensor, mode.tracer).proxy.node
    except Exception:
        return None


def _renamed(expr: Expr | None, names: dict[str, str]) -> Expr | None:
    if isinstance(expr, Dim) and expr.node in names:
        return Dim(names[expr.node], expr.output, expr.dim)
    if isinstance(expr, Op):
        return Op(expr.name, tuple(_renamed(a, names) for a in expr.args))  # type: ignore[misc]
    return expr


class Recorder(TorchFunctionMode):
    """Stores a :class:`Call` under every graph node a torch call creates, and tracks the sizes read from tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[str, Call] = {}  # graph node name (as the tracer named it) -> the call that created it
        self.values: dict[Attr, Number] = {}  # every tracked attribute (tuple elements one by one) -> its value
        self.originals: dict[tuple[str, str], Any] = {}  # (module path, attribute) -> its value
        self._nodes: dict[str, torch.fx.Node] = {}  # names as recorded: export renames placeholders afterwards

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        owner = getattr(func, "__self__", None)
        if owner is torch.Tensor.shape or func is torch.Tensor.size:
            return self._sizes(func(*args, **kwargs), args, kwargs)
        if len(args) < 2 and not kwargs or isinstance(owner, GetSetDescriptorType):
            return func(*args, **kwargs)  # x.dim(), x.dtype, ...: no numbers to record (the common case, fast)
        numbers: list[tuple[Number, Expr | None]] = []
        _numbers(args, numbers)
        _numbers(kwargs, numbers)
        graph = _tracer_graph() if numbers else None
        before = len(graph.nodes) if graph is not None else 0
        result = func(*args, **kwargs)
        if graph is not None and len(graph.nodes) > before:
            call = Call(getattr(func, "__name__", str(func)), tuple(numbers))
            node = graph._root.prev  # the nodes this call created are the last ones of the graph
            for _ in range(len(graph.nodes) - before):
                self.calls.setdefault(node.name, call)
                self._nodes.setdefault(node.name, node)
                node = node.prev
        return result

    def finish(self) -> dict[str, Call]:
        """The calls by the names their nodes have now, with the tensor sizes they read renamed alike."""
        names = {old: node.name for old, node in self._nodes.items() if node.name != old}
        if not names:
            return self.calls
        renamed: dict[int, Call] = {}  # one call made several nodes: it stays one object
        for c in self.calls.values():
            if id(c) not in renamed:
                renamed[id(c)] = Call(c.func, tuple((v, _renamed(e, names)) for v, e in c.numbers))
        return {names.get(k, k): renamed[id(c)] for k, c in self.calls.items()}

    def _sizes(self, result: Any, args: Any, kwargs: Any) -> Any:
        tensor = args[0] if args else None
        node = _node_of(tensor) if isinstance(tensor, torch.Tensor) else None
        if node is None:
            return result
        name = node.name
        self._nodes.setdefault(name, node)
        if isinstance(result, torch.Size):
            return torch.Size(SizeInt(int(s), Dim(name, 0, d)) for d, s in enumerate(result))
        dim = args[1] if len(args) > 1 else kwargs.get("dim")
        if isinstance(result, int) and isinstance(dim, int) and tensor is not None:
            return SizeInt(result, Dim(name, 0, dim % max(1, tensor.dim())))
        return result


@contextlib.contextmanager
def tracked_attributes(model: torch.nn.Module, recorder: Recorder) -> Iterator[None]:
    """Every int, float and tuple/list-of-int attribute of every module is a tracked number for the duration, and so
    is every such field of a config object modules hold as ``config`` (read at forward time, e.g.
    ``ids == self.config.num_experts``): a field is tracked as attribute ``config.<field>`` of the first module
    holding that config, so every module reading it reads one attribute."""
    saved: list[tuple[Any, str, Any]] = []
    configs: set[int] = set()
    try:
        for path, module in model.named_modules():
            for name, value in list(vars(module).items()):
                if name == "config" and _is_config(value) and id(value) not in configs:
                    configs.add(id(value))
                    _track_fields(value, path, "config.", recorder, saved)
                    continue
                if name.startswith("_") or name == "training":
                    continue
                _track(module, name, value, Attr(path, name), recorder, saved)
        yield
    finally:
        for owner, name, value in reversed(saved):
            owner.__dict__[name] = value


def _is_config(value: Any) -> bool:
    """A configuration object (transformers' ``PretrainedConfig`` and the like): plain fields, ``to_dict()``."""
    return not isinstance(value, torch.nn.Module) and callable(getattr(value, "to_dict", None)) and hasattr(
        value, "__dict__")


def _track_fields(config: Any, path: str, prefix: str, recorder: Recorder, saved: list[tuple[Any, str, Any]]) -> None:
    for name, value in list(vars(config).items()):
        if not name.startswith("_"):
            _track(config, name, value, Attr(path, prefix + name), recorder, saved)


def _track(owner: Any, name: str, value: Any, leaf: Attr, recorder: Recorder,
           saved: list[tuple[Any, str, Any]]) -> None:
    swapped = tracked(value, leaf)
    if swapped is None:
        return
    saved.append((owner, name, value))
    owner.__dict__[name] = swapped
    recorder.originals[(leaf.owner, leaf.name)] = list(value) if isinstance(value, (tuple, list)) else value
    for i, v in enumerate(value) if isinstance(value, (tuple, list)) else [(None, value)]:
        recorder.values[Attr(leaf.owner, leaf.name, i)] = v


@contextlib.contextmanager
def recording(model: torch.nn.Module) -> Iterator[Recorder]:
    """Tracked attributes and a :class:`Recorder` around whatever traces ``model`` inside the block."""
    recorder = Recorder()
    with tracked_attributes(model, recorder), recorder:
        yield recorder
