"""Exported programs of real architectures: torchvision CNNs/transformers and tiny Hugging Face families.

Each model is exported with ``torch.export``, saved, loaded through the pickle-free loader and pruned as a
program (literal sizes rewritten); verification against the masked original must pass. One vision model and
two HF families run by default; ``-m slow`` runs the rest (the architectures ``docs/programs.md`` names).
"""

import pytest
import torch

import secateurs as sc
from secateurs.io.program import load_program

VISION_FAST = ["mobilenet_v3_small"]
VISION_SLOW = ["resnet18", "densenet121", "convnext_tiny", "regnet_y_400mf", "efficientnet_b0", "swin_t", "vit_b_16"]
HF_FAST = [("llama", {"heads": 0.5, "ffn": 0.25}), ("llama", {"query_heads": 0.5, "head_dim": 0.25}),
           ("bert", {"heads": 0.5, "hidden": 0.25})]


def _program(tmp_path, model, args, kwargs):
    ep = torch.export.export(model.eval(), args, kwargs, strict=False)
    torch.export.save(ep, str(tmp_path / "model.pt2"))
    return load_program(tmp_path / "model.pt2")


def _vision(tmp_path, name):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None)
    loaded = _program(tmp_path, model, (torch.randn(1, 3, 224, 224),), None)
    report = sc.prune(loaded.module, loaded.args[0], ratio=0.3)
    assert report.verification.ok, report.verification.message
    assert report.macs_ratio < 0.9


@pytest.mark.parametrize("name", VISION_FAST)
def test_vision_program(tmp_path, name):
    _vision(tmp_path, name)


@pytest.mark.slow
@pytest.mark.parametrize("name", VISION_SLOW)
def test_vision_program_slow(tmp_path, name):
    _vision(tmp_path, name)


@pytest.mark.parametrize("family,ratio", HF_FAST, ids=lambda v: v if isinstance(v, str) else "-".join(v))
def test_hugging_face_program(tmp_path, family, ratio):
    pytest.importorskip("transformers")
    from secateurs.testing.hf import tiny

    torch.manual_seed(0)
    case = tiny(family)
    loaded = _program(tmp_path, case.model, (), case.inputs)
    assert loaded.input_spec() is not None and loaded.input_spec().seq_len == case.inputs["input_ids"].shape[1]
    report = sc.prune(loaded.module, case.inputs, ratio=ratio)
    assert report.verification.ok, report.verification.message
    assert report.plan.literals  # head counts / widths written into the graph were rewritten
    assert report.params_ratio < 1
