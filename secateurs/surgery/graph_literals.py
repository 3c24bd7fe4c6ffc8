"""Rewrite the literal sizes of an exported program's graph after its tensors were sliced.

A module from ``ExportedProgram.module()`` (what ``file:model.pt2`` loads) runs ATen ops whose sizes are
written into the graph (``view(x, [197, 12, 64])``). Plans record the new value of each such argument
(``Plan.literals``, computed from the coupled index spaces); this module writes them into the graph,
then propagates fake tensors through it so an op whose shapes no longer fit fails here, naming the node,
instead of at the user's first forward.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.fx

from secateurs.errors import ApplyError
from secateurs.graph.capture import target_name
from secateurs.graph.program import EXPORT_HELPERS


def _resolve_op(name: str) -> Any:
    namespace, packet, overload = name.split(".")
    return getattr(getattr(getattr(torch.ops, namespace), packet), overload)


def rewrite_literals_(gm: torch.fx.GraphModule, literals: dict[str, dict[str, Any]], *,
                      reverse: bool = False) -> Callable[[], None]:
    """Write ``literals`` into ``gm``'s graph, check it by fake propagation; returns a function that undoes it.

    ``reverse`` writes the values from before pruning back (rebuilding the unpruned program for ``verify``).
    """
    nodes = {n.name: n for n in gm.graph.nodes}
    saved: list[tuple[torch.fx.Node, Any, tuple[Any, ...], dict[str, Any]]] = []

    def undo() -> None:
        for node, target, args, kwargs in reversed(saved):
            node.target, node.args, node.kwargs = target, args, kwargs
        gm.recompile()

    try:
        for name, entry in literals.items():
            expected = entry.get("target", entry.get("op")) if reverse else entry.get("op")
            node = nodes.get(name)
            if node is None or node.op != "call_function" or target_name(node.target) != expected:
                found = "no such node" if node is None else f"it runs {target_name(node.target)}"
                raise ApplyError(f"plan rewrites the sizes of graph node {name!r} ({expected}), but this graph "
                                 f"has {found}: the plan was made for another program; make a new plan for this one")
            saved.append((node, node.target, node.args, dict(node.kwargs)))
            args, kwargs = list(node.args), dict(node.kwargs)
            for key, value in entry["before" if reverse else "set"].items():
                kind, _, where = key.partition(".")
                if kind == "args":
                    args[int(where)] = _merge(args[int(where)], value)
                else:
                    kwargs[where] = _merge(kwargs.get(where), value)
            node.args, node.kwargs = tuple(args), kwargs
            if "target" in entry:
                node.target = _resolve_op(entry["op"] if reverse else entry["target"])
        gm.recompile()
        check_shapes(gm)
    except Exception:
        undo()
        raise
    return undo


def _merge(written: Any, value: Any) -> Any:
    """``value`` with the graph's symbolic elements kept: a program exported with a dynamic batch computes that
    size in the graph (``sym_size``), while the plan, made on a static capture, holds its example value."""
    if isinstance(written, torch.fx.Node):
        return written
    if isinstance(written, (list, tuple)) and isinstance(value, (list, tuple)) and len(written) == len(value):
        return type(written)(w if isinstance(w, torch.fx.Node) else v for w, v in zip(written, value, strict=True))
    return value


def check_shapes(gm: torch.fx.GraphModule) -> None:
    """Propagate fake tensors (the placeholders' recorded shapes) through ``gm``; an op that fails names its node."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    values = [n.meta.get("val") for n in placeholders]
    if any(not isinstance(v, torch.Tensor) for v in values):
        return  # no recorded example shapes to check with; verification against the masked original still runs
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    with mode:
        fake = [torch.empty(v.shape, dtype=v.dtype) for v in values]
    _Checker(gm, mode).run(*fake)


class _Checker(torch.fx.Interpreter):
    def __init__(self, gm: torch.fx.GraphModule, mode: Any):
        super().__init__(gm)
        self.mode = mode

    def run_node(self, n: torch.fx.Node) -> Any:
        if n.op == "call_module" and n.target in EXPORT_HELPERS:
            return None
        try:
            with self.mode:
                result = super().run_node(n)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ApplyError(
                f"after pruning, graph node {n.name!r} ({target_name(n.target)}) no longer fits its inputs: {first}. A size "
                "written into this op depends on a pruned dimension that secateurs does not know how to rewrite; "
                "ignore the layers around it (ignore=[...]) or prune the original nn.Module instead of the program"
            ) from exc
        if isinstance(result, torch.Tensor):
            n.meta["val"] = result
        return result
