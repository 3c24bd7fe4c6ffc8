"""Compensation inside ``sc.prune``: statistics and reference outputs before apply, the refit after."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from secateurs.compensation.error import relative_error
from secateurs.compensation.gather import ConsumerStatistics, gather
from secateurs.compensation.refit import compensate
from secateurs.compensation.result import CompensationResult
from secateurs.plans import Plan
from secateurs.verification import run


@dataclass
class Pending:
    method: str
    statistics: ConsumerStatistics
    reference: list[torch.Tensor]  # unpruned outputs on the example inputs
    example_inputs: Any

    def finish(self, model: nn.Module, plan: Plan) -> CompensationResult:
        before = relative_error(self.reference, run(model, self.example_inputs))
        result = compensate(model, plan, self.statistics, method=self.method)
        result.error_before = before
        result.error_after = relative_error(self.reference, run(model, self.example_inputs))
        if result.error_after > before:
            result.notes.append("compensation raised the output error on example_inputs (fit on calibration data "
                                "that differs from them, or too few calibration rows: add batches)")
        rec = plan.settings.get("compensation")
        if isinstance(rec, dict):
            rec["error_before"], rec["error_after"] = before, result.error_after
        return result


def prepare(model: nn.Module, plan: Plan, example_inputs: Any, method: str, calibration: Any) -> Pending:
    """Before apply: gather the consumers' input statistics and the unpruned outputs."""
    statistics = gather(model, plan, calibration, method=method)
    return Pending(method, statistics, run(model, example_inputs), example_inputs)
