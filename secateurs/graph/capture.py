"""Capture a model as a flat list of ATen-level operations with ``torch.export``.

Higher-order ops that wrap a sub-graph (``wrap_with_set_grad_enabled``, autocast) are inlined, so
rules only ever see plain operators. Parameters and buffers map back to their module FQNs.
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx

from secateurs.errors import CaptureError, InvalidTypeError, SecateursError
from secateurs.graph.meta import module_scope, node_value
from secateurs.graph.provenance import Attr
from secateurs.graph.tracking import Call, Recorder, recording
from secateurs.graph.unbacked import example_values, graph_has_unbacked, keep_unbacked, settle


@dataclass(frozen=True)
class Ref:
    """A reference to the value of another node (``index`` picks one output of a tuple-valued node)."""

    name: str


def ref_name(value: Any) -> str | None:
    """The node a ``Ref`` names; None for anything else (a constant argument)."""
    return value.name if isinstance(value, Ref) else None


def op_in(target: str, names: tuple[str, ...]) -> bool:
    """Whether ``target`` (``aten.topk.default``) is one of ``names``: an op packet (``aten.topk``, any overload),
    a prefix ending in a dot (``aten.to.``), or the full name."""
    return any(target == n or target.startswith(n if n.endswith(".") else n + ".") for n in names)


def refs_in(value: Any) -> Iterator[Ref]:
    """Every ``Ref`` in ``value`` (node args and kwargs: nested lists, tuples and dicts)."""
    if isinstance(value, Ref):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from refs_in(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from refs_in(v)


@dataclass
class OpNode:
    name: str
    kind: str  # "input" | "call" | "output"
    target: str  # e.g. "aten.conv2d.default", "getitem", "secateurs.tuple"
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    value: Any  # FakeTensor, tuple of FakeTensors, python scalar or None
    module_path: str = ""
    module_type: str = ""

    def where(self) -> str:
        scope = f" in module '{self.module_path}' ({self.module_type})" if self.module_path else ""
        return f"node '{self.name}' ({self.target}){scope}"


@dataclass
class Captured:
    nodes: list[OpNode]
    by_name: dict[str, OpNode]
    state_inputs: dict[str, str]  # placeholder name -> parameter/buffer FQN
    state_kinds: dict[str, str]  # placeholder name -> "parameter" | "buffer" | "constant"
    user_inputs: list[str]
    outputs: list[Any]
    aliases: list[list[str]] = field(default_factory=list)  # placeholders that are one tensor (tied weights)
    # how forward() computed the numbers it passed to the call that made each node (graph/tracking.py)
    calls: dict[str, Call] = field(repr=False, default_factory=dict)
    attribute_values: dict[Attr, int | float] = field(repr=False, default_factory=dict)
    attribute_originals: dict[tuple[str, str], Any] = field(repr=False, default_factory=dict)
    # (node, output, dim) whose size depends on the input values, set to what the example gave (graph/unbacked.py)
    data_sized: set[tuple[str, int, int]] = field(default_factory=set)


ExampleInputs = Any


def normalize_inputs(example_inputs: ExampleInputs) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Accept a tensor, a tuple/list of positional args, or a dict of keyword args."""
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,), {}
    if isinstance(example_inputs, Mapping):
        return (), dict(example_inputs)
    if isinstance(example_inputs, (tuple, list)):
        return tuple(example_inputs), {}
    raise InvalidTypeError(
        f"example_inputs must be a tensor, a tuple of positional arguments or a dict of keyword "
        f"arguments, got {type(example_inputs).__name__}"
    )


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode for the duration, then restore each one's own flag."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
    except NotImplementedError as exc:  # ExportedProgram.module() refuses eval()/train()
        raise InvalidTypeError(
            f"{type(model).__name__}.eval() is not supported ({exc}): this looks like ExportedProgram.module(); pass "
            "secateurs.io.program.program_module(exported_program) or secateurs.io.program.load_program(path).module, "
            "a GraphModule over the same graph that secateurs can prune") from None
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def model_inputs(model: torch.nn.Module, example_inputs: ExampleInputs) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``normalize_inputs`` plus ``use_cache=False`` for models with a ``config.use_cache`` flag (Hugging Face)
    when the caller did not choose: a KV-cache object is neither exportable nor an output to compare. Models that
    take it by name or through ``**kwargs`` (GraniteMoE-style) get it."""
    args, kwargs = normalize_inputs(example_inputs)
    if "use_cache" in kwargs or not _has_cache_flag(getattr(model, "config", None)):
        return args, kwargs
    try:
        params = inspect.signature(model.forward).parameters
        accepts = "use_cache" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    except (TypeError, ValueError):
        accepts = False
    return (args, {**kwargs, "use_cache": False}) if accepts else (args, kwargs)


def _has_cache_flag(config: Any) -> bool:
    """A ``use_cache`` flag on the config, or on its text config (multimodal models keep it there)."""
    if isinstance(getattr(config, "use_cache", None), bool):
        return True
    text = getattr(config, "get_text_config", None)
    try:
        return callable(text) and isinstance(getattr(text(), "use_cache", None), bool)
    except Exception:  # a config whose accessor needs more than it has: no flag
        return False


def export_model(model: torch.nn.Module, example_inputs: ExampleInputs) -> Any:
    args, kwargs = model_inputs(model, example_inputs)
    try:
        with eval_mode(model), torch.no_grad(), _idle_module_moves():
            try:
                ep = torch.export.export(model, args, kwargs, strict=False)
            except Exception as exc:
                if not _data_dependent(exc):
                    raise
                why = f"branches on tensor values ({_first_line(exc)})"
            else:
                if not graph_has_unbacked(ep):
                    return ep
                why = "makes tensors whose sizes depend on the input values (tokens gathered per expert)"
            return _draft_export(model, args, kwargs, why)
    except SecateursError:
        raise
    except Exception as exc:  # torch raises many unrelated types here; re-raise as ours
        raise CaptureError(
            f"torch.export could not capture {type(model).__name__}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}\n"
            "Check that the example inputs match what forward() expects (shape, dtype, device, "
            "keyword names); for Hugging Face models pass use_cache=False; data-dependent Python "
            "control flow in forward() must be rewritten with torch.cond or removed."
        ) from exc


@contextlib.contextmanager
def _idle_module_moves() -> Iterator[None]:
    """``module.to(dtype)`` inside forward() (Switch Transformers casts its router every call) where every tensor of
    the module already has that dtype and device is a no-op; under torch.export it would try to swap the traced
    parameters and fail, so for the capture it returns the module as it is."""
    original = torch.nn.Module.to

    def to(self: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        try:
            device, dtype, _, _ = torch._C._nn._parse_to(*args, **kwargs)
        except Exception:  # arguments torch does not read as a move: let it say so
            return original(self, *args, **kwargs)
        tensors = [*self.parameters(), *self.buffers()]
        if all((dtype is None or not t.is_floating_point() or t.dtype == dtype)
               and (device is None or t.device == torch.device(device)) for t in tensors):
            return self
        return original(self, *args, **kwargs)

    torch.nn.Module.to = to  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.nn.Module.to = original  # type: ignore[method-assign]


def _draft_export(model: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], why: str) -> Any:
    """``torch.export.draft_export``, which follows the example inputs where the graph depends on their values
    (branches taken, sizes of data-dependent tensors, kept as symbols with their example values: graph/unbacked.py)."""
    with keep_unbacked():
        ep = torch.export.draft_export(model, args, kwargs, strict=False)
    warnings.warn(f"{type(model).__name__}.forward() {why}: captured with torch.export.draft_export, which follows the "
                  "example inputs; sizes that depend on the data are never pruned, and the plan and its verification "
                  "hold for inputs that take the same branches", stacklevel=5)
    return ep


def _data_dependent(exc: BaseException) -> bool:
    """A Python branch on a tensor's value (``if mask.any():``), which torch.export cannot trace symbolically."""
    from torch.fx.experimental.symbolic_shapes import GuardOnDataDependentSymNode

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, GuardOnDataDependentSymNode) or "data-dependent expression" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:120] if text else type(exc).__name__


def capture(model: torch.nn.Module, example_inputs: ExampleInputs) -> Captured:
    if not isinstance(model, torch.nn.Module):
        raise InvalidTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    try:
        with recording(model) as recorder:
            ep = export_model(model, example_inputs)
    except Exception:  # tracked numbers upset this forward(): capture it plainly (its own error if it fails too)
        recorder = Recorder()
        ep = export_model(model, example_inputs)
    captured = from_exported(ep)
    settle_data_sizes_(captured, ep)
    captured.aliases = tied_placeholders(model, captured)
    captured.calls, captured.attribute_values = recorder.finish(), recorder.values
    captured.attribute_originals = recorder.originals
    return captured


def settle_data_sizes_(captured: Captured, ep: Any) -> None:
    """Write the example's value into every size that depends on the input values and record those dims in
    ``captured.data_sized`` (a node left unresolved keeps its symbols: coupling then refuses it)."""
    values = example_values(ep)
    if not values:
        return
    for node in captured.nodes:
        value, dims, ok = settle(node.value, values)
        if ok:
            node.value = value
            captured.data_sized.update((node.name, k, d) for k, d in dims)


def tied_placeholders(model: torch.nn.Module, captured: Captured) -> list[list[str]]:
    """Groups of placeholders whose FQNs name the same tensor object (e.g. tied embedding / LM head)."""
    by_id: dict[int, list[str]] = {}
    for name, t in list(model.named_parameters(remove_duplicate=False)) + list(model.named_buffers(remove_duplicate=False)):
        by_id.setdefault(id(t), []).append(name)
    placeholder = {fqn: ph for ph, fqn in captured.state_inputs.items()}
    groups = []
    for names in by_id.values():
        phs = sorted({placeholder[n] for n in names if n in placeholder})
        if len(phs) > 1:
            groups.append(phs)
    return groups


def target_name(target: Any) -> str:
    """An fx node target as secateurs names ops: ``aten.linear.default``, ``getitem``, a function's name."""
    if isinstance(target, torch._ops.OpOverload):
        return f"aten.{target.__name__}" if target.namespace == "aten" else str(target)
    if getattr(target, "__name__", None) == "getitem":
        return "getitem"
    return getattr(target, "__name__", str(target))


def from_exported(ep: Any) -> Captured:
    sig = ep.graph_signature
    state_inputs: dict[str, str] = {}
    state_kinds: dict[str, str] = {}
    user_inputs: list[str] = []
    for spec in sig.input_specs:
        name = spec.arg.name
        kind = spec.kind.name
        if kind == "PARAMETER":
            state_inputs[name], state_kinds[name] = spec.target, "parameter"
        elif kind == "BUFFER":
            state_inputs[name], state_kinds[name] = spec.target, "buffer"
        elif kind in ("CONSTANT_TENSOR", "CUSTOM_OBJ", "TOKEN"):
            state_inputs[name], state_kinds[name] = str(spec.target), "constant"
        else:
            user_inputs.append(name)
    nodes: list[OpNode] = []
    outputs: list[Any] = []
    _flatten_graph(ep.graph_module, ep.graph, {}, "", nodes, outputs, top=True)
    return Captured(
        nodes=nodes,
        by_name={n.name: n for n in nodes},
        state_inputs=state_inputs,
        state_kinds=state_kinds,
        user_inputs=user_inputs,
        outputs=outputs,
    )


def _convert(arg: Any, rename: dict[str, Any]) -> Any:
    if isinstance(arg, torch.fx.Node):
        return rename.get(arg.name, Ref(arg.name))
    if isinstance(arg, (list, tuple)):
        return type(arg)(_convert(a, rename) for a in arg)
    if isinstance(arg, dict):
        return {k: _convert(v, rename) for k, v in arg.items()}
    return arg


def _flatten_graph(
    gm: torch.fx.GraphModule,
    graph: torch.fx.Graph,
    rename: dict[str, Any],
    prefix: str,
    nodes: list[OpNode],
    outputs: list[Any],
    top: bool,
) -> None:
    """Append the nodes of ``graph`` to ``nodes``, inlining sub-graphs of higher-order ops."""
    for node in graph.nodes:
        if node.op == "placeholder":
            if top:
                nodes.append(OpNode(node.name, "input", "placeholder", (), {}, node_value(node)))
            continue
        if node.op == "get_attr":
            continue
        if node.op == "output":
            outputs.extend(_convert(node.args[0], rename))
            continue
        path, mtype = module_scope(node)
        sub = _subgraph_of(gm, node)
        if sub is not None:
            sub_gm, operands = sub
            inner_rename: dict[str, Any] = {}
            placeholders = [n for n in sub_gm.graph.nodes if n.op == "placeholder"]
            for ph, operand in zip(placeholders, operands, strict=False):
                inner_rename[ph.name] = _convert(operand, rename)
            inner_outputs: list[Any] = []
            _flatten_graph(sub_gm, sub_gm.graph, inner_rename, f"{prefix}{node.name}.", nodes, inner_outputs, top=False)
            nodes.append(
                OpNode(prefix + node.name, "call", "secateurs.tuple", tuple(inner_outputs), {}, node_value(node), path, mtype)
            )
            rename[node.name] = Ref(prefix + node.name)
            continue
        name = prefix + node.name
        if prefix:
            rename[node.name] = Ref(name)
        nodes.append(
            OpNode(
                name,
                "call",
                target_name(node.target),
                _convert(tuple(node.args), rename),
                _convert(dict(node.kwargs), rename),
                node_value(node),
                path,
                mtype,
            )
        )


def _subgraph_of(gm: torch.fx.GraphModule, node: torch.fx.Node) -> tuple[torch.fx.GraphModule, list[Any]] | None:
    """For a higher-order op wrapping a sub-graph, return (sub-graph module, its operands)."""
    if node.op != "call_function" or isinstance(node.target, torch._ops.OpOverload):
        return None
    for i, arg in enumerate(node.args):
        if isinstance(arg, torch.fx.Node) and arg.op == "get_attr":
            sub = getattr(gm, str(arg.target), None)
            if isinstance(sub, torch.fx.GraphModule):
                return sub, list(node.args[i + 1 :])
    return None
