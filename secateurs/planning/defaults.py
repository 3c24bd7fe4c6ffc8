"""What ``importance="auto"`` and ``compensate="auto"`` (the defaults) mean for a model, resolved when planning.

With calibration data, the criterion and compensation measured best for the model's kind (``DEFAULTS``: one
entry per kind, each naming the benchmark that chose it); without, ``l2`` magnitude and no compensation, as a
criterion that reads no data is all there is. The resolved names replace ``"auto"`` in ``plan.config`` (so a
replayed plan uses them even if the defaults change later) and ``plan.settings["defaults"]`` says what was chosen
and why. A criterion or compensation the caller names is never changed; compensation is chosen automatically only
when the criterion is too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from torch import nn

from secateurs.calibration.data import CalibrationData
from secateurs.calibration.stats import Statistics
from secateurs.config import AUTO, PruneConfig
from secateurs.graph.program import is_program_graph
from secateurs.registry import Registry

#: no data: the magnitude criterion, nothing to refit from
NO_DATA = ("l2", None)
#: the most memory the Gram matrices of an automatic least-squares compensation may take (else ``bias``)
GRAM_LIMIT_BYTES = 4 * 1024**3


@dataclass(frozen=True)
class Defaults:
    """The data-aware choice for one kind of model and the measurement behind it."""

    importance: str
    compensate: str | None
    evidence: str


DEFAULTS: Registry[Defaults] = Registry("data-aware default")
register_defaults = DEFAULTS.register

register_defaults("causal_lm")(Defaults(
    "wanda", "lstsq",
    "bench/bench_defaults.py: tiny GQA Llama, 50% of FFN neurons: perplexity x1.016 (l2 alone x1.116)"))
register_defaults("transformer")(Defaults(
    "wanda", "lstsq",
    "bench/bench_defaults.py: all-MiniLM-L6-v2, 25% of FFN neurons: embedding cosine 0.965 (l2 alone 0.839)"))
register_defaults("other")(Defaults(
    "fluctuation", "lstsq",
    "docs/benchmarks.md (digits CNN): best compensated accuracy at 50% and 70% of channels"))


def model_kind(model: nn.Module) -> str:
    """``causal_lm`` (a Hugging Face ``...ForCausalLM``), ``transformer`` (another Hugging Face model) or ``other``."""
    config = getattr(model, "config", None)
    if config is None or not isinstance(getattr(config, "model_type", None), str):
        return "other"
    return "causal_lm" if type(model).__name__.endswith("ForCausalLM") else "transformer"


def _reads_data(calibration: Any) -> bool:
    return calibration is not None


def _reusable(calibration: Any) -> bool:
    """Batches that can be read twice (criterion, then compensation): not a one-shot iterator, not statistics."""
    if isinstance(calibration, Statistics):
        return False
    batches = calibration.batches if isinstance(calibration, CalibrationData) else calibration
    return not isinstance(batches, Iterator)


def resolve(config: PruneConfig, model: nn.Module, calibration: Any, *,
            weights_elsewhere: bool = False) -> tuple[PruneConfig, dict[str, Any] | None]:
    """``config`` with ``"auto"`` replaced, and the record of what was chosen (None when nothing was auto).
    ``weights_elsewhere``: the model is a weightless skeleton whose weights are read from a checkpoint (out of
    core), so its meta parameters do not mean that calibration cannot run."""
    auto_importance = isinstance(config.importance, str) and config.importance == AUTO
    auto_compensate = isinstance(config.compensate, str) and config.compensate == AUTO
    if not (auto_importance or auto_compensate):
        return config, None
    kind = model_kind(model)
    record: dict[str, Any] = {"kind": kind}
    if not _reads_data(calibration) or (not weights_elsewhere and any(p.is_meta for p in model.parameters())):
        importance, compensate = NO_DATA
        record["reason"] = "no calibration data: l2 magnitude, no compensation"
    else:
        chosen = DEFAULTS.get(kind)
        importance, compensate = chosen.importance, chosen.compensate
        record["reason"] = f"calibration data given: best measured for {kind} ({chosen.evidence})"
        if not auto_importance:
            compensate = None  # the caller chose the criterion: compensation only when asked for
            record["reason"] = "criterion named by the caller: no automatic compensation"
        elif compensate is not None and not _reusable(calibration):
            compensate = None
            record["reason"] += "; no compensation: the calibration batches cannot be read twice (pass a list)"
        elif compensate is not None and is_program_graph(model):
            compensate = None
            record["reason"] += "; no compensation: a torch.export program has no Linear modules to refit"
    values: dict[str, Any] = {}
    if auto_importance:
        values["importance"] = record["importance"] = importance
    if auto_compensate:
        values["compensate"] = record["compensate"] = compensate
    return dataclasses.replace(config, **values), record


def fit_memory(config: PruneConfig, record: dict[str, Any] | None, gram_bytes: int) -> PruneConfig:
    """An automatic ``lstsq`` whose Gram matrices would take more than ``GRAM_LIMIT_BYTES`` becomes ``bias``."""
    if record is None or record.get("compensate") != "lstsq" or gram_bytes <= GRAM_LIMIT_BYTES:
        return config
    record["compensate"] = "bias"
    record["reason"] += (f"; bias instead of lstsq: its Gram matrices would take {gram_bytes / 1024**3:.1f} GiB "
                         f"(more than {GRAM_LIMIT_BYTES / 1024**3:.0f})")
    return dataclasses.replace(config, compensate="bias")
