"""The int8 (dynamic) model on disk: safetensors with int8 weights, scales and zero points; no pickle."""

import pytest
import torch
from torch import nn

import secateurs as sc
from secateurs.errors import FileFormatError
from secateurs.io.int8 import INT8_WEIGHTS, int8_tensors, load_int8_, quantize_dynamic_int8
from secateurs.io.saving import add_int8, read_manifest
from secateurs.testing.toys import MLP as _MLP


def MLP():  # noqa: N802  (a factory standing in for the class)
    return _MLP(d_in=64, hidden=256, d_out=10)


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model, x = MLP(), torch.randn(4, 64)
    report = sc.prune(model, x, ratio=0.5)
    q = quantize_dynamic_int8(model)
    out = sc.save(model, report.plan, tmp_path / "m", int8=q)
    return out, x, q, MLP


def test_int8_model_round_trips_exactly_even_without_the_float_weights(saved):
    out, x, q, factory = saved
    assert read_manifest(out)["int8"]["linear_layers"] == 2
    loaded = sc.load(out, factory, int8=True)
    assert type(loaded.fc1).__module__.startswith("torch.ao.nn.quantized.dynamic")
    torch.testing.assert_close(loaded(x), q(x), rtol=0, atol=0)
    (out / "model.safetensors").unlink()  # deploy only the int8 file: the float Linear weights are not needed
    torch.testing.assert_close(sc.load(out, factory, int8=True)(x), q(x), rtol=0, atol=0)


def test_int8_file_is_about_a_quarter_of_the_float_weights(saved):
    out, *_ = saved
    assert (out / INT8_WEIGHTS).stat().st_size < 0.45 * (out / "model.safetensors").stat().st_size


def test_per_channel_weights_keep_their_scales_and_axis():
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    torch.manual_seed(0)
    model = MLP().eval()
    q = quantize_dynamic(model, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)
    tensors = int8_tensors(q)
    assert tensors["fc1.weight.scale"].numel() == model.fc1.out_features and "fc1.weight.axis" in tensors
    rebuilt = load_int8_(model, tensors, "memory")
    x = torch.randn(3, 64)
    torch.testing.assert_close(rebuilt(x), q(x), rtol=0, atol=0)


def test_missing_corrupt_or_unrequested_int8_is_a_clear_error(saved, tmp_path):
    out, x, q, factory = saved
    data = bytearray((out / INT8_WEIGHTS).read_bytes())
    data[-3] ^= 0xFF
    (out / INT8_WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(FileFormatError, match="checksum"):
        sc.load(out, factory, int8=True)
    torch.manual_seed(0)
    model = MLP()
    plain = sc.save(model, sc.prune(model, x, ratio=0.5).plan, tmp_path / "plain")
    with pytest.raises(FileFormatError, match="no int8 model"):
        sc.load(plain, MLP, int8=True)


def test_add_int8_to_an_existing_directory(tmp_path):
    torch.manual_seed(0)
    model, x = MLP(), torch.randn(4, 64)
    out = sc.save(model, sc.prune(model, x, ratio=0.5).plan, tmp_path / "m")
    q = quantize_dynamic_int8(model)
    add_int8(out, q)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no staging left behind
    torch.testing.assert_close(sc.load(out, MLP, int8=True)(x), q(x), rtol=0, atol=0)
