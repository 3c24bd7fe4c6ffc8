"""Compensation inside ``sc.prune``: statistics and reference outputs before apply, the refit after."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from secateurs.compensation.config import Compensation
from secateurs.compensation.error import relative_error
from secateurs.compensation.gather import ConsumerStatistics, check_request, gather
from secateurs.compensation.refit import compensate
from secateurs.compensation.result import CompensationResult
from secateurs.errors import InvalidArgumentError
from secateurs.plans import Plan
from secateurs.verification.oracle import has_weights, run


@dataclass
class Pending:
    request: Compensation
    statistics: ConsumerStatistics
    reference: list[torch.Tensor]  # unpruned outputs on the example inputs
    example_inputs: Any

    def finish(self, model: nn.Module, plan: Plan) -> CompensationResult:
        before = relative_error(self.reference, run(model, self.example_inputs))
        r = self.request
        result = compensate(model, plan, self.statistics, method=r.method, ridge=r.ridge, add_bias=r.add_bias)
        result.error_before = before
        result.error_after = relative_error(self.reference, run(model, self.example_inputs))
        if result.error_after > before:
            result.notes.append("compensation raised the output error on example_inputs (fit on calibration data "
                                "that differs from them, or too few calibration rows: add batches)")
        rec = plan.settings.get("compensation")
        if isinstance(rec, dict):
            rec["error_before"], rec["error_after"] = before, result.error_after
        return result


def prepare(model: nn.Module, plan: Plan, example_inputs: Any, spec: str | Compensation, calibration: Any) -> Pending:
    """Before apply: gather the consumers' input statistics and the unpruned outputs."""
    request = check_request(spec, calibration)
    if not has_weights(model):
        raise InvalidArgumentError(f"compensate={request.method!r} reads weights and runs calibration batches, but the model is "
                                   "on the meta device; load the weights first")
    statistics = gather(model, plan, calibration, method=request.method)
    return Pending(request, statistics, run(model, example_inputs), example_inputs)
