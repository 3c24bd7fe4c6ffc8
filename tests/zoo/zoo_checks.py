"""The check every zoo test runs: prune at 0.3 with defaults, verified, or refused with the expected reason."""

from __future__ import annotations

import pytest
import torch

import secateurs as sc
from secateurs.reporting.prune_report import PruneReport


def prune_and_check(model: torch.nn.Module, x: torch.Tensor, refused: str | None = None) -> PruneReport | None:
    """Prune ``model`` in place; ``refused``: the reason a SecateursError must give instead (then None)."""
    if refused is not None:
        with pytest.raises(sc.SecateursError, match=refused):
            sc.prune(model, x, ratio=0.3)
        return None
    with torch.no_grad():
        shape_before = model(x).shape
    report = sc.prune(model, x, ratio=0.3)
    v = report.verification
    assert v is not None and v.ok, v
    assert v.shapes_ok and v.reexported
    if v.mode == "exact":
        assert v.rel_error is not None and v.rel_error < 1e-4
    assert report.plan.removed_units() > 0
    assert report.params_after < report.params_before
    with torch.no_grad():
        assert model(x).shape == shape_before
    return report
