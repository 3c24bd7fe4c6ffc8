"""A ratio request whose result no stock config describes is narrowed to the kinds one can (planning/narrow.py)."""

from __future__ import annotations

import pytest
import torch

import secateurs as sc
from secateurs.testing.hf_tiny import build
from secateurs.testing.hf_zoo import max_relative_error

pytest.importorskip("transformers")


def test_lfm2_ffn_rounded_to_a_multiple_is_left_whole_and_the_heads_pruned(tmp_path):
    """LFM2 rounds its FFN width from block_ffn_dim_multiplier and block_multiple_of: the solve predicts a config
    the rebuild check rejects, so {"heads", "ffn"} is narrowed to the heads, and the stock class reloads it."""
    tiny = build("lfm2")
    model, inputs = tiny.model, tiny.inputs
    with pytest.warns(UserWarning, match="pruned with"):
        report = sc.prune(model, inputs, ratio={"heads": 0.25, "ffn": 0.3})
    narrowed = report.plan.settings["narrowed"]
    assert narrowed["kept_whole"] == ["ffn"] and narrowed["used"] == {"heads": 0.25, "ffn": 0.0}
    assert report.plan.config is not None and report.plan.config.width_target().value == {"heads": 0.25, "ffn": 0.3}
    assert report.verification.ok and not report.plan.settings.get("checks")
    assert {g.kind for g in report.plan.groups if g.removed} == {"heads"}
    model.save_pretrained(tmp_path)
    fresh = type(model).from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert max_relative_error(model(**inputs), fresh(**inputs)) <= 1e-5


def test_valid_heads_false_keeps_the_request():
    tiny = build("lfm2")
    with pytest.warns(UserWarning):
        report = sc.prune(tiny.model, tiny.inputs, ratio={"heads": 0.25, "ffn": 0.3}, valid_heads=False)
    assert "narrowed" not in report.plan.settings
    assert {g.kind for g in report.plan.groups if g.removed} >= {"channels"}
