"""LaCo (Yang et al., 2024, "LaCo: Large Language Model Pruning via Layer Collapse"): merge runs of consecutive
blocks into one by their parameter differences, choosing where by how similar the merged model's representations
stay to the original's on calibration data.

A run ``l, l+1, ..., l+m`` becomes block ``l`` with parameters ``theta_l + sum_k (theta_k - theta_l)`` (the
"reserving-differences-while-seeking-common" merge); the other blocks of the run are removed. Where to merge is
chosen greedily, one block at a time: every pair of neighbouring runs of the current partition (a run starts as
one block) is tried, the candidate model's last-block output is compared with the original's by cosine similarity
averaged over tokens (weighted by ``attention_mask`` when a batch has one), and the most similar merge is kept.
LaCo walks from the top layer down with a similarity threshold; the greedy form here removes exactly ``n`` blocks
and may merge anywhere. Each step runs every candidate over the calibration batches: ``n`` steps of up to ``L - 1``
candidates.

The candidate models are the original with merged parameters written into the run's first block and the rest of
the run bypassed (forward hooks returning the block input), so no copy of the model is made; every parameter is
restored after each try.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from secateurs.calibration.data import CalibrationData, as_calibration, forward_batch
from secateurs.depth.criteria import _cosine, _mean_over_tokens, _token_weights, first_tensor
from secateurs.depth.reference import bypassed
from secateurs.errors import InvalidArgumentError, PlanError
from secateurs.graph.blocks import container, find_blocks
from secateurs.graph.capture import eval_mode
from secateurs.surgery.blocks import merged_parameters

Runs = list[list[int]]


@contextlib.contextmanager
def _merged(blocks: list[nn.Module], runs: Runs) -> Iterator[None]:
    """The blocks with every run of two or more merged into its first block (values written in place, restored)."""
    saved: list[tuple[torch.Tensor, torch.Tensor]] = []
    try:
        with torch.no_grad():
            for run in runs:
                if len(run) < 2:
                    continue
                params = dict(blocks[run[0]].named_parameters())
                for name, value in merged_parameters(blocks, run).items():
                    saved.append((params[name], params[name].detach().clone()))
                    params[name].copy_(value)
        yield
    finally:
        with torch.no_grad():
            for p, old in reversed(saved):
                p.copy_(old)


class _LastOutput:
    """The output hidden state of the last block, recorded by a forward hook (registered after any bypass hook)."""

    def __init__(self, block: nn.Module):
        self.value: torch.Tensor | None = None
        self.block = block

    @contextlib.contextmanager
    def hooked(self) -> Iterator[None]:
        def hook(mod: nn.Module, args: Any, out: Any) -> None:
            self.value = first_tensor(out)

        handle = self.block.register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()


def _batches(data: CalibrationData) -> list[Any]:
    out = []
    for k, batch in enumerate(data.batches):
        if data.max_batches is not None and k >= data.max_batches:
            break
        out.append(batch)
    if not out:
        raise InvalidArgumentError("calibration yielded no batches; pass at least one batch shaped like example_inputs")
    return out


def _outputs(model: nn.Module, path: str, data: CalibrationData, batches: list[Any], runs: Runs) -> list[torch.Tensor]:
    blocks = list(container(model, path))
    gone = sorted(i for run in runs for i in run[1:])
    last = _LastOutput(blocks[-1])
    out: list[torch.Tensor] = []
    with _merged(blocks, runs), bypassed(model, {path: gone} if gone else {}), last.hooked():
        for k, batch in enumerate(batches):
            last.value = None
            forward_batch(model, data, batch, k)
            if last.value is None:
                raise PlanError(f"the last block of {path!r} returned no tensor; merging layers needs blocks whose "
                                "first output is the hidden state")
            out.append(last.value.detach())
    return out


def _similarity(reference: list[torch.Tensor], outputs: list[torch.Tensor], data: CalibrationData,
                batches: list[Any]) -> float:
    total = weight = 0.0
    for ref, out, batch in zip(reference, outputs, batches, strict=True):
        raw = data.inputs(batch) if data.inputs else batch
        t, w = _mean_over_tokens(_cosine(ref, out), _token_weights(raw, ref.shape[:-1]))
        total, weight = total + t, weight + w
    return total / max(weight, 1e-12)


def choose_merges(model: nn.Module, n_remove: int, calibration: Any) -> tuple[str, dict[str, Any]]:
    """The container path and a record (``runs`` merged, similarity after each step) removing ``n_remove`` blocks."""
    if any(p.is_meta for p in model.parameters()):
        raise InvalidArgumentError("merge_layers reads activations, but the model is on the meta device; load the "
                                   "weights first")
    path = find_blocks(model)
    n_blocks = len(container(model, path))
    if n_remove >= n_blocks:
        raise InvalidArgumentError(f"merge_layers={n_remove} but {path or type(model).__name__!r} has {n_blocks} "
                                   "blocks; at least one must remain")
    data = as_calibration(calibration)
    batches = _batches(data)
    runs: Runs = [[i] for i in range(n_blocks)]
    steps = []
    with eval_mode(model), torch.no_grad():
        reference = _outputs(model, path, data, batches, [])
        for _ in range(n_remove):
            tried = []
            for j in range(len(runs) - 1):
                candidate = runs[:j] + [runs[j] + runs[j + 1]] + runs[j + 2:]
                sim = _similarity(reference, _outputs(model, path, data, batches, candidate), data, batches)
                tried.append((sim, -j, candidate))
            best = max(tried, key=lambda t: (t[0], t[1]))  # ties: the earlier pair
            runs = best[2]
            steps.append({"merged": runs[-best[1]], "similarity": best[0],
                          "candidates": {runs_key(c): s for s, _, c in tried}})
    merged = [run for run in runs if len(run) > 1]
    record = {"n": n_remove, "method": "laco", "container": path, "runs": merged,
              "dropped": sorted(i for run in merged for i in run[1:]), "steps": steps,
              "similarity": steps[-1]["similarity"] if steps else 1.0, "calibration_batches": len(batches)}
    return path, record


def runs_key(runs: Runs) -> str:
    """A short name of a partition: the runs of two or more blocks, e.g. ``2-3`` or ``0-1,5-7``."""
    return ",".join(f"{r[0]}-{r[-1]}" for r in runs if len(r) > 1)
