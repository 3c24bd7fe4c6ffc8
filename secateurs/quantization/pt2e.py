"""PT2E quantization (``torch.export`` + a quantizer + ``prepare_pt2e``/``convert_pt2e``), through torchao.

torch 2.14 no longer ships ``torch.ao.quantization.quantize_pt2e``; the flow lives in torchao
(``pip install 'secateurs[edge]'``). Backends (quantizers):

* ``x86``: torchao's ``X86InductorQuantizer`` (static: int8 activations and per-channel int8 weights of convs
  and Linear layers; dynamic: Linear layers only). The converted graph is lowered to oneDNN int8 kernels
  (``lower_pt2e_quantized_to_x86``), which is what makes it fast on a CPU in eager mode.
* ``xnnpack``: executorch's ``XNNPACKQuantizer`` (symmetric per-channel weights), for ``.pte`` export; on the
  host its converted graph runs as reference quantize/dequantize ops (correct, not fast).

Every read or write of ``node.meta`` this flow needs is in :func:`capture`.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from secateurs.errors import InvalidArgumentError, MissingDependencyError
from secateurs.graph.capture import ExampleInputs, normalize_inputs

BACKENDS = ("x86", "xnnpack")
_INSTALL = "pip install 'secateurs[edge]' (torchao>=0.18)"


def require_torchao() -> Any:
    try:
        with _quiet():
            import torchao.quantization.pt2e.quantize_pt2e as qp
    except ImportError as exc:
        raise MissingDependencyError(f"int8 quantization (PT2E) needs torchao: {_INSTALL} ({exc})") from None
    return qp


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torchao and executorch warn on import and on every prepare (deprecations, pytree notices)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def quantizer(backend: str, *, dynamic: bool = False, qat: bool = False) -> Any:
    """The PT2E quantizer of ``backend`` (see the module doc); ``dynamic`` quantizes only Linear layers, with
    activation ranges computed at run time."""
    if backend not in BACKENDS:
        raise InvalidArgumentError(f"unknown quantization backend {backend!r}; use one of {', '.join(BACKENDS)}")
    require_torchao()
    with _quiet():
        if backend == "x86":
            import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq

            config = xiq.get_default_x86_inductor_quantization_config(is_qat=qat, is_dynamic=dynamic)
            q = xiq.X86InductorQuantizer()
            return q.set_module_type_qconfig(nn.Linear, config) if dynamic else q.set_global(config)
        try:
            from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
                XNNPACKQuantizer,
                get_symmetric_quantization_config,
            )
        except ImportError as exc:
            raise MissingDependencyError(f"the xnnpack quantizer comes with executorch: pip install "
                                         f"'secateurs[edge]' ({exc})") from None
        config = get_symmetric_quantization_config(is_per_channel=True, is_qat=qat, is_dynamic=dynamic)
        return XNNPACKQuantizer().set_global(config)


def capture(model: nn.Module, example_inputs: ExampleInputs) -> torch.fx.GraphModule:
    """``torch.export`` of ``model`` as a GraphModule the quantizers can annotate.

    Quantizers find "the ReLU after this conv" by source partitions, which fall back to the innermost module of
    ``nn_module_stack``: a module called twice (torchvision's ``BasicBlock.relu``) would be one partition with two
    outputs and make annotation fail. Each call of a leaf module is tagged as its own source here (export keys
    repeated calls ``name@1``)."""
    args, kwargs = normalize_inputs(example_inputs)
    try:
        gm = export_batched(model, args, kwargs).module()
    except Exception as exc:  # export raises many types (Unsupported, UserError, RuntimeError, TypeError)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidArgumentError(f"int8 quantization (PT2E) needs a model torch.export can capture; "
                                   f"{type(model).__name__} failed: {type(exc).__name__}: {first[:200]}") from None
    leaves = {name for name, m in model.named_modules() if next(m.children(), None) is None}
    for node in gm.graph.nodes:
        stack = node.meta.get("nn_module_stack")
        if node.op != "call_function" or not stack or node.meta.get("source_fn_stack") is not None:
            continue
        key, (fqn, _) = list(stack.items())[-1]
        if fqn in leaves:
            node.meta["source_fn_stack"] = [(key, type(model.get_submodule(fqn)))]
    return gm


def export_batched(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], *, strict: bool = False) -> Any:
    """``torch.export`` with a dynamic batch dim where the model allows one, so the int8 graph runs at any batch:
    inputs with a batch of 1 are repeated to 2 for tracing (export specialises a size-1 dim) and dim 0 of every
    tensor is ``Dim.AUTO``. Keyword inputs, or a model whose batch is not free, get the plain export."""
    if not kwargs and args:
        grown = tuple(v.repeat(2, *([1] * (v.ndim - 1))) if isinstance(v, torch.Tensor) and v.ndim >= 2
                      and v.shape[0] == 1 else v for v in args)
        shapes = tuple({0: torch.export.Dim.AUTO} if isinstance(v, torch.Tensor) and v.ndim >= 1 else None for v in grown)
        try:
            return torch.export.export(model, grown, dynamic_shapes=shapes, strict=strict)
        except Exception:  # noqa: S110 - the batch is not a free dim of this model: specialise below
            pass
    return torch.export.export(model, args, kwargs, strict=strict)


def prepare(model: nn.Module, example_inputs: ExampleInputs, backend: str, *, dynamic: bool = False,
            qat: bool = False) -> torch.fx.GraphModule:
    """The captured copy of ``model`` with observers (``qat``: fake quantization) inserted; ``model`` is unchanged."""
    qp = require_torchao()
    q = quantizer(backend, dynamic=dynamic, qat=qat)
    gm = capture(model, example_inputs)
    with _quiet():
        return qp.prepare_qat_pt2e(gm, q) if qat else qp.prepare_pt2e(gm, q)


def convert(prepared: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """``convert_pt2e`` with the int8 weights folded into constants (the reference quantized graph)."""
    qp = require_torchao()
    with _quiet():
        return qp.convert_pt2e(prepared, fold_quantize=True)


def lower(converted: torch.fx.GraphModule, example_inputs: ExampleInputs, backend: str) -> torch.fx.GraphModule:
    """The converted graph on the backend's kernels (``x86``: oneDNN int8 ops); ``xnnpack`` graphs are returned as
    they are (they run on the device through executorch)."""
    if backend != "x86":
        return converted
    args, kwargs = normalize_inputs(example_inputs)
    if kwargs:
        raise InvalidArgumentError("the x86 int8 lowering takes positional tensor inputs; this model takes keywords "
                                   f"{sorted(kwargs)}: use int8 dynamic quantization instead")
    with _quiet(), torch.no_grad():
        lowered = _lower_x86(converted, args)
    # oneDNN int8 convs return channels-last tensors, and a flatten that export recorded as ``view`` cannot
    # view them: ``reshape`` is the same op where a view works and copies where it does not
    for node in lowered.graph.nodes:
        if node.op == "call_function" and node.target is torch.ops.aten.view.default:
            node.target = torch.ops.aten.reshape.default
    lowered.recompile()
    return lowered


def _lower_x86(model: torch.fx.GraphModule, args: tuple[Any, ...]) -> torch.fx.GraphModule:
    """torchao's ``lower_pt2e_quantized_to_x86`` with the batch dim kept dynamic: re-export with post-autograd
    decompositions only, then inductor's freezing passes (Q/DQ patterns -> oneDNN int8 ops) and constant folding."""
    from torch._inductor.constant_folding import constant_fold
    from torch._inductor.fx_passes.freezing_patterns import freezing_passes

    table = torch.export.default_decompositions()
    for op in list(table):
        if not torch._export.utils._is_cia_op(op):
            del table[op]
    lowered = export_batched(model, args, {}, strict=True).run_decompositions(table).module()
    for node in lowered.graph.nodes:  # the freezing patterns match permute, not t
        if node.op == "call_function" and node.target is torch.ops.aten.t.default:
            node.target, node.args = torch.ops.aten.permute.default, (node.args[0], [1, 0])
    lowered.recompile()
    freezing_passes(lowered, args)
    constant_fold(lowered)
    return lowered


def eval_mode_(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Switch a prepared (QAT) graph to inference behaviour (batch norm statistics, dropout)."""
    require_torchao()
    with _quiet():
        from torchao.quantization.pt2e import move_exported_model_to_eval

        return move_exported_model_to_eval(gm)


def allow_train_eval_(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Let ``gm.train()`` / ``gm.eval()`` switch the exported graph's batch norm and dropout (an exported graph
    refuses them otherwise), as the ``recover`` loop calls them."""
    require_torchao()
    with _quiet():
        from torchao.quantization.pt2e import allow_exported_model_train_eval

        return allow_exported_model_train_eval(gm)
