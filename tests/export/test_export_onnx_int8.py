import sys

import pytest
import torch
from torch import nn

import secateurs as sc
from secateurs.errors import InvalidArgumentError, MissingDependencyError
from secateurs.export import export_onnx, quantize_int8
from secateurs.testing.models import ConcatNet, TinyViT


@pytest.fixture(scope="module")
def pruned_vit():
    torch.manual_seed(0)
    model = TinyViT().eval()
    x = torch.randn(2, 3, 16, 16)
    sc.prune(model, x, ratio=0.5)
    return model, x


def test_onnx_legacy_export_matches_pytorch_with_dynamic_batch(pruned_vit, tmp_path):
    pytest.importorskip("onnxruntime")
    model, x = pruned_vit
    info = export_onnx(model, x, tmp_path / "m.onnx", exporter="legacy")
    assert info["exporter"] == "legacy" and info["parity_ok"] and info["max_abs_diff"] < 1e-4
    # another batch size than the one exported with
    info = export_onnx(model, torch.randn(5, 3, 16, 16), tmp_path / "m.onnx", exporter="legacy")
    assert info["parity_ok"]


def test_onnx_int8_file(tmp_path):
    pytest.importorskip("onnxruntime")
    from secateurs.export import onnx_int8

    # wide enough that weights, not quantization metadata, dominate the file size
    torch.manual_seed(0)
    model, x = TinyViT(dim=128, depth=2).eval(), torch.randn(2, 3, 16, 16)
    sc.prune(model, x, ratio=0.25)
    export_onnx(model, x, tmp_path / "m.onnx", exporter="legacy")
    info = onnx_int8(tmp_path / "m.onnx", tmp_path / "m8.onnx", model, x)
    assert info["bytes"] < (tmp_path / "m.onnx").stat().st_size and info["max_abs_diff"] < 0.5


@pytest.mark.slow
def test_onnx_dynamo_export(pruned_vit, tmp_path):
    pytest.importorskip("onnxscript")
    model, x = pruned_vit
    info = export_onnx(model, x, tmp_path / "m.onnx", exporter="auto")
    assert info["exporter"] == "dynamo" and info["parity_ok"]


def test_onnx_missing_dependency(pruned_vit, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(MissingDependencyError, match="pip install"):
        export_onnx(pruned_vit[0], pruned_vit[1], tmp_path / "m.onnx")


def test_bad_exporter_name(pruned_vit, tmp_path):
    with pytest.raises(InvalidArgumentError, match="exporter"):
        export_onnx(pruned_vit[0], pruned_vit[1], tmp_path / "m.onnx", exporter="magic")


def test_int8_quantization_fidelity_and_model_left_alone(pruned_vit):
    model, x = pruned_vit
    before = model(x)
    qmodel, stats = quantize_int8(model, x, latency=False)
    assert stats["quantized_layers"] == sum(isinstance(m, nn.Linear) for m in model.modules())
    assert 0 < stats["rel_error"] < 0.05 and stats["top1_agreement"] >= 0.5
    torch.testing.assert_close(model(x), before)
    assert any("quantized" in type(m).__module__ for m in qmodel.modules())


def test_int8_needs_linear_layers():
    conv_only = nn.Sequential(nn.Conv2d(3, 4, 3)).eval()
    with pytest.raises(InvalidArgumentError, match="no nn.Linear"):
        quantize_int8(conv_only, torch.randn(1, 3, 8, 8))


def test_int8_on_concat_net_reports_latency():
    model = ConcatNet().eval()
    _, stats = quantize_int8(model, torch.randn(1, 3, 16, 16))
    assert stats["latency_ms"] > 0 and stats["fp32_latency_ms"] > 0
