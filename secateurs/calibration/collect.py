"""Run calibration batches through a model with hooks and accumulate streaming statistics."""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from secateurs.calibration.data import CalibrationData, LossFn, as_calibration, forward_batch, progress
from secateurs.calibration.hooks import all_reduce_, channel_hooks, moment_hooks
from secateurs.calibration.routing import routing_hooks
from secateurs.calibration.sequential import collect_sequential
from secateurs.calibration.stats import Statistics
from secateurs.errors import InvalidArgumentError
from secateurs.graph.capture import eval_mode


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
    needed: Collection[str] | None = None,
    routers: Mapping[str, int] | None = None,
) -> Statistics:
    """Forward every batch (and backward ``loss_fn(output, batch)`` when ``grads``) and return statistics.

    The model runs in eval mode and is left as it was: hooks are removed, ``requires_grad`` flags and
    ``.grad`` fields are untouched. Under ``torch.distributed`` every sum is all-reduced across ranks.
    ``grad_stats`` picks the gradient accumulators, each the size of the model: ``"sum"`` (mean gradient,
    for Taylor) and ``"sq"`` (squared gradients, for the Fisher); float32 at least, float64 for float64 models.
    ``moments`` names modules (Linear, Conv, HF Conv1D) whose input features get a sum and, with ``gram``, a
    Gram matrix (``stats.moments``; see ``calibration.features``); ``channels=False`` skips the per-channel
    statistics of every layer when only those moments are wanted. ``needed`` (sequential mode) names the
    modules whose statistics will be read: when none of them comes after the blocks, the last pass (final
    norm and head over every batch) is skipped. ``routers`` (router weight FQN -> top-k) adds
    mixture-of-experts routing statistics (``stats.routing``; see ``calibration.routing``).
    """
    data = as_calibration(calibration)
    if grads and loss_fn is None:
        raise InvalidArgumentError("gradient statistics need loss_fn=lambda output, batch: <scalar loss tensor>")
    if data.sequential:
        if routers:
            raise InvalidArgumentError("router statistics need the whole model per batch: use "
                                       "CalibrationData(..., sequential=False) with importance='routing'")
        return _collect_sequential(model, data, grads, moments, gram, channels, needed)
    unknown = set(grad_stats) - {"sum", "sq"}
    if unknown:
        raise InvalidArgumentError(f"grad_stats entries must be 'sum' or 'sq', got {sorted(unknown)}")
    stats = _run_batches(model, data, loss_fn if grads else None, grad_stats, moments, gram, channels, routers or {})
    if stats.n_batches == 0:
        raise InvalidArgumentError("calibration yielded no batches; pass at least one batch shaped like example_inputs")
    all_reduce_(stats)
    return stats


def _collect_sequential(model: nn.Module, data: CalibrationData, grads: bool, moments: Collection[str], gram: bool,
                        channels: bool, needed: Collection[str] | None) -> Statistics:
    from secateurs.graph.program_limits import refuse_for_program

    refuse_for_program(model, sequential=True)
    if grads:
        raise InvalidArgumentError(
            "sequential calibration collects activation statistics only; gradient criteria (taylor, hessian) need "
            "a backward pass through the whole model: use CalibrationData(..., sequential=False)")

    @contextlib.contextmanager
    def install(m: nn.Module, st: Statistics, blocks: Iterable[nn.Module]) -> Iterator[None]:
        with channel_hooks(m, st) if channels else contextlib.nullcontext(), moment_hooks(m, st, moments, gram, blocks):
            yield

    return collect_sequential(model, data, hooks=install, needed=needed)


def _run_batches(model: nn.Module, data: CalibrationData, loss_fn: LossFn | None, grad_stats: tuple[str, ...],
                 moments: Collection[str], gram: bool, channels: bool, routers: Mapping[str, int]) -> Statistics:
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
        hooks = channel_hooks(model, stats) if channels else contextlib.nullcontext()
        with taps, eval_mode(model), hooks, moment_hooks(model, stats, moments, gram), \
                routing_hooks(model, stats.routing, routers), torch.set_grad_enabled(grads):
            for i, batch in enumerate(progress(data.batches, data.progress, total)):
                if data.max_batches is not None and i >= data.max_batches:
                    break
                out = forward_batch(model, data, batch, i)
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


