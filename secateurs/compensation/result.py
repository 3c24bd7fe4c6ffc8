"""What a compensation did: method, layers refit, biases added, output error before and after."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class CompensationResult:
    method: str
    layers: list[str]  # module paths whose weight or bias changed
    added_biases: dict[str, int] = field(default_factory=dict)  # module path -> size of the bias created (zeros + fit)
    config_flags: dict[str, bool] = field(default_factory=dict)  # HF config flags set so the biases are saved/loaded
    notes: list[str] = field(default_factory=list)
    error_before: float | None = None  # relative output error vs the unpruned model, before compensation
    error_after: float | None = None  # ... and after

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "layers": list(self.layers), "added_biases": dict(self.added_biases),
                "config_flags": dict(self.config_flags), "notes": list(self.notes),
                "error_before": self.error_before, "error_after": self.error_after}

    def summary(self) -> str:
        line = f"compensation ({self.method}): {len(self.layers)} layer(s) refit"
        if self.added_biases:
            line += f", {len(self.added_biases)} bias(es) added"
        if self.error_before is not None and self.error_after is not None:
            line += f"; output relative error {self.error_before:.3g} -> {self.error_after:.3g}"
        return line
