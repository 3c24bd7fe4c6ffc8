"""Run calibration batches through a model with hooks and accumulate streaming statistics."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from secateurs.calibration.features import feature_map
from secateurs.calibration.layouts import layout_for
from secateurs.calibration.moments import Moments
from secateurs.calibration.stats import ChannelStats, Statistics
from secateurs.errors import InvalidArgumentError, InvalidTypeError
from secateurs.graph.capture import eval_mode, normalize_inputs

LossFn = Callable[[Any, Any], torch.Tensor]


@dataclass
class CalibrationData:
    """Calibration batches plus how to read them.

    ``batches`` is any iterable (a DataLoader, a list). Each batch is shaped like ``example_inputs``
    (a tensor, a tuple of positional arguments or a dict of keyword arguments), or ``inputs(batch)``
    returns that, e.g. ``inputs=lambda b: b[0]`` for ``(image, label)`` batches. ``loss_fn(output, batch)``
    receives the raw batch, so it can read labels. ``progress=None`` shows a bar only on a terminal.

    ``sequential=True`` (decoder LMs and other stacks of blocks) holds only one block's activations at a
    time, as SparseGPT/Wanda do: the batches run up to the first block, then block by block on the cached
    hidden states (``secateurs.calibration.sequential``). ``blocks`` names the ``nn.ModuleList`` of blocks
    (e.g. ``"model.layers"``); by default the largest list of same-type modules. Activation statistics
    only (not for gradient criteria such as ``taylor``).
    """

    batches: Iterable[Any]
    inputs: Callable[[Any], Any] | None = None
    max_batches: int | None = None
    progress: bool | None = None
    sequential: bool = False
    blocks: str | None = None


def as_calibration(calibration: Any) -> CalibrationData:
    if isinstance(calibration, CalibrationData):
        return calibration
    if isinstance(calibration, (torch.Tensor, dict)) or not isinstance(calibration, Iterable):
        raise InvalidTypeError(
            f"calibration must be an iterable of batches (a DataLoader or a list like [x1, x2]), a CalibrationData "
            f"or precomputed Statistics, got {type(calibration).__name__}; wrap a single batch as [batch]"
        )
    return CalibrationData(calibration)


@contextlib.contextmanager
def _hooks(model: nn.Module, stats: Statistics) -> Iterator[None]:
    handles = []
    for path, module in model.named_modules():
        layout = layout_for(module)
        if layout is None:
            continue

        def hook(mod: nn.Module, args: tuple[Any, ...], out: Any, path: str = path, dim: int = layout.act_dim,
                 rec_in: bool = layout.records_input) -> None:
            x = args[0] if args else None
            if rec_in and isinstance(x, torch.Tensor) and x.is_floating_point() and x.ndim:
                _record(stats.inputs, path, x, dim)
            y = out[0] if isinstance(out, (tuple, list)) else out
            if isinstance(y, torch.Tensor) and y.is_floating_point() and y.ndim:
                _record(stats.outputs, path, y, dim)

        handles.append(module.register_forward_hook(hook))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def _moment_hooks(model: nn.Module, stats: Statistics, paths: Collection[str], gram: bool,
                  reset_on: Iterable[nn.Module] = ()) -> Iterator[None]:
    """Hooks recording input-feature moments of the modules at ``paths`` (see calibration.features).

    Layers that read the same input tensor with the same feature map (q/k/v, gate/up projections) share one
    ``Moments`` object, so their Gram matrix is stored and accumulated once. The table of inputs seen is
    cleared at every forward of ``model`` and of the modules ``reset_on`` (the blocks, in sequential mode).
    """
    handles = []
    seen: dict[tuple[object, ...], tuple[torch.Tensor, Moments]] = {}  # this forward: (input id, features) -> moments
    if paths:
        for root in (model, *reset_on):
            handles.append(root.register_forward_pre_hook(lambda mod, args: seen.clear()))
    for path in sorted(set(paths)):
        module = model.get_submodule(path)
        fmap = feature_map(module)
        if fmap is None or fmap.rows is None:
            raise InvalidArgumentError(f"cannot record input features of {path!r} ({type(module).__name__}): "
                                       "only Linear, Conv1d/Conv2d with zero padding and HF Conv1D are supported")

        def hook(mod: nn.Module, args: tuple[Any, ...], path: str = path, fmap: Any = fmap) -> None:
            x = args[0] if args else None
            if not (isinstance(x, torch.Tensor) and x.is_floating_point()):
                return
            key = (id(x), fmap.size, fmap.signature)
            hit = seen.get(key)
            m = stats.moments.get(path)
            if m is None and hit is not None and hit[0] is x:
                stats.moments[path] = hit[1]  # same tensor, same features: share
                return
            if m is not None and hit is not None and hit[0] is x and hit[1] is m:
                return  # already counted for a layer sharing these moments
            if m is None:
                m = stats.moments[path] = Moments.empty(fmap.size, gram, x.device)
            m.update(fmap.rows(x))
            seen[key] = (x, m)

        handles.append(module.register_forward_pre_hook(hook))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _record(table: dict[str, ChannelStats], path: str, x: torch.Tensor, dim: int) -> None:
    s = table.get(path)
    if s is None:
        s = table[path] = ChannelStats.empty(x.shape[dim], x.device)
    s.update(x, dim)


def _progress(items: Iterable[Any], enabled: bool | None, total: int | None) -> Iterable[Any]:
    from tqdm.auto import tqdm

    # disable=None lets tqdm hide the bar when stderr is not a terminal
    return tqdm(items, desc="calibration", total=total, disable=None if enabled is None else not enabled, leave=False)


def collect(
    model: nn.Module,
    calibration: Iterable[Any] | CalibrationData,
    *,
    loss_fn: LossFn | None = None,
    grads: bool = False,
    grad_stats: tuple[str, ...] = ("sum", "sq"),
    moments: Collection[str] = (),
    gram: bool = True,
    channels: bool = True,
) -> Statistics:
    """Forward every batch (and backward ``loss_fn(output, batch)`` when ``grads``) and return statistics.

    The model runs in eval mode and is left as it was: hooks are removed, ``requires_grad`` flags and
    ``.grad`` fields are untouched. Under ``torch.distributed`` every sum is all-reduced across ranks.
    ``grad_stats`` picks the gradient accumulators, each the size of the model: ``"sum"`` (mean gradient,
    for Taylor) and ``"sq"`` (squared gradients, for the Fisher); float32 at least, float64 for float64 models.
    ``moments`` names modules (Linear, Conv, HF Conv1D) whose input features get a sum and, with ``gram``, a
    Gram matrix (``stats.moments``; see ``calibration.features``); ``channels=False`` skips the per-channel
    statistics of every layer when only those moments are wanted.
    """
    data = as_calibration(calibration)
    if grads and loss_fn is None:
        raise InvalidArgumentError("gradient statistics need loss_fn=lambda output, batch: <scalar loss tensor>")
    if data.sequential:
        return _collect_sequential(model, data, grads, moments, gram, channels)
    unknown = set(grad_stats) - {"sum", "sq"}
    if unknown:
        raise InvalidArgumentError(f"grad_stats entries must be 'sum' or 'sq', got {sorted(unknown)}")
    stats = _run_batches(model, data, loss_fn if grads else None, grad_stats, moments, gram, channels)
    if stats.n_batches == 0:
        raise InvalidArgumentError("calibration yielded no batches; pass at least one batch shaped like example_inputs")
    all_reduce_(stats)
    return stats


def _collect_sequential(model: nn.Module, data: CalibrationData, grads: bool, moments: Collection[str], gram: bool,
                        channels: bool) -> Statistics:
    from secateurs.graph.program_limits import refuse_for_program

    refuse_for_program(model, sequential=True)
    if grads:
        raise InvalidArgumentError(
            "sequential calibration collects activation statistics only; gradient criteria (taylor, hessian) need "
            "a backward pass through the whole model: use CalibrationData(..., sequential=False)")
    from secateurs.calibration.sequential import collect_sequential

    @contextlib.contextmanager
    def install(m: nn.Module, st: Statistics, blocks: Iterable[nn.Module]) -> Iterator[None]:
        with _hooks(m, st) if channels else contextlib.nullcontext(), _moment_hooks(m, st, moments, gram, blocks):
            yield

    return collect_sequential(model, data, hooks=install)


def _run_batches(model: nn.Module, data: CalibrationData, loss_fn: LossFn | None, grad_stats: tuple[str, ...],
                 moments: Collection[str], gram: bool, channels: bool) -> Statistics:
    """Forward every batch with the hooks installed (backward through ``loss_fn`` when given)."""
    grads = loss_fn is not None
    params = dict(model.named_parameters())
    stats = Statistics()
    if grads:
        def zeros(p: torch.Tensor) -> torch.Tensor:
            return torch.zeros_like(p, dtype=torch.promote_types(p.dtype, torch.float32))

        stats.grads = {k: zeros(p) for k, p in params.items()} if "sum" in grad_stats else {}
        stats.grad_sq = {k: zeros(p) for k, p in params.items()} if "sq" in grad_stats else {}
    total = data.max_batches
    if total is None and hasattr(data.batches, "__len__"):
        total = len(data.batches)  # type: ignore[arg-type]
    flags = {k: p.requires_grad for k, p in params.items()}
    try:
        if grads:
            for p in params.values():
                p.requires_grad_(True)
        taps = _program_taps(model)  # a torch.export program: its layer ops fire the hooks (before they are set)
        channel_hooks = _hooks(model, stats) if channels else contextlib.nullcontext()
        with taps, eval_mode(model), channel_hooks, _moment_hooks(model, stats, moments, gram), \
                torch.set_grad_enabled(grads):
            for i, batch in enumerate(_progress(data.batches, data.progress, total)):
                if data.max_batches is not None and i >= data.max_batches:
                    break
                out = _forward(model, data, batch, i)
                if loss_fn is not None:
                    _accumulate_grads(stats, params, loss_fn(out, batch))
                stats.n_batches += 1
    finally:
        for k, p in params.items():
            p.requires_grad_(flags[k])
    return stats


def _program_taps(model: nn.Module) -> contextlib.AbstractContextManager[Any]:
    from secateurs.graph.program import is_program_graph

    if not is_program_graph(model):
        return contextlib.nullcontext()
    from secateurs.calibration.program_taps import mark_layouts_, tapped

    mark_layouts_(model)  # type: ignore[arg-type]
    return tapped(model)  # type: ignore[arg-type]


def _forward(model: nn.Module, data: CalibrationData, batch: Any, i: int) -> Any:
    args, kwargs = normalize_inputs(data.inputs(batch) if data.inputs else batch)
    try:
        return model(*args, **kwargs)
    except (TypeError, RuntimeError, ValueError) as exc:
        shapes = [tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__ for a in args]
        raise InvalidArgumentError(
            f"calibration batch {i} does not run through {type(model).__name__} (positional arguments {shapes}, "
            f"keywords {sorted(kwargs)}): {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}. "
            "Each batch is passed like example_inputs; for (inputs, labels) batches use "
            "CalibrationData(loader, inputs=lambda b: b[0])"
        ) from exc


def _accumulate_grads(stats: Statistics, params: dict[str, nn.Parameter], loss: Any) -> None:
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise InvalidArgumentError(
            f"loss_fn must return a scalar tensor, got {type(loss).__name__}"
            f"{' of shape ' + str(tuple(loss.shape)) if isinstance(loss, torch.Tensor) else ''}; reduce it with .mean()"
        )
    names = list(params)
    gs = torch.autograd.grad(loss.reshape(()), [params[k] for k in names], allow_unused=True)
    for k, g in zip(names, gs, strict=True):
        if g is None:
            continue
        if k in stats.grads:
            stats.grads[k] += g.detach()
        if k in stats.grad_sq:
            stats.grad_sq[k] += g.detach().to(stats.grad_sq[k].dtype).square()


def all_reduce_(stats: Statistics) -> None:
    """Sum every accumulator across the ranks of the default process group, when one is initialized."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    tensors = stats.all_tensors()
    for t in tensors:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    n = torch.tensor(float(stats.n_batches), dtype=torch.float64, device=tensors[0].device if tensors else "cpu")
    dist.all_reduce(n, op=dist.ReduceOp.SUM)
    stats.n_batches = int(n.item())
