"""Expert ids clamped before they index per-expert tensors (Ergo's per-expert RMSNorm scales,
``weight[ids.clamp_max(num_experts - 1)]``) are still followed: whole experts are removed everywhere, exactly."""

from __future__ import annotations

import pytest
import torch

import secateurs as sc
from secateurs.testing.hf_tiny import build
from secateurs.testing.hf_zoo import max_relative_error

pytest.importorskip("transformers")


def test_ergo_whole_experts_remove_the_per_expert_norm_scales_too(tmp_path):
    tiny = build("ergo")
    model, inputs = tiny.model, tiny.inputs
    report = sc.prune(model, inputs, ratio={"experts": 0.25})
    assert report.verification.ok and report.verification.mode == "exact"
    experts = [g for g in report.plan.groups if g.kind == "experts" and g.removed]
    assert experts and all(any("post_expert_norm" in m[0] for m in g.members) for g in experts)
    assert model.config.num_experts == 3
    model.save_pretrained(tmp_path)
    fresh = type(model).from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert max_relative_error(model(**inputs), fresh(**inputs)) <= 1e-5
