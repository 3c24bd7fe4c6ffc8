"""The int8 (dynamic) model on disk: safetensors with int8 weights, scales and zero points; no pickle."""

import pytest
import torch
from torch import nn

import secateurs as sc
from secateurs.errors import FileFormatError
from secateurs.io.int8 import INT8_WEIGHTS, int8_tensors, load_int8_
from secateurs.io.saving import add_int8, read_manifest
from secateurs.quantization.dynamic import quantize_dynamic_int8
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


@pytest.fixture(scope="module")
def static_saved(tmp_path_factory):
    pytest.importorskip("torchao", reason="int8 static (PT2E) needs torchao: pip install 'secateurs[edge]'")
    from secateurs.io.inputs import InputSpec
    from secateurs.quantization.static import quantize_static_int8
    from secateurs.testing.models import ConcatNet

    torch.manual_seed(0)
    spec = InputSpec(shape=(1, 3, 16, 16))
    model, x = ConcatNet().eval(), spec.make()
    report = sc.prune(model, x, ratio=0.5)
    q, _ = quantize_static_int8(model, x, [spec.make(seed=i) for i in range(1, 4)], latency=False)
    out = sc.save(model, report.plan, tmp_path_factory.mktemp("static") / "s", int8=q, input_spec=spec)
    return out, q, ConcatNet, spec


def test_static_int8_round_trips_exactly(static_saved):
    out, q, factory, spec = static_saved
    assert read_manifest(out)["int8"] == {"mode": "static", "backend": "x86", "flow": "ptq", "file": INT8_WEIGHTS}
    loaded = sc.load(out, factory, int8=True)
    for seed in (0, 5):  # the recorded input and another one
        x = spec.make(seed=seed)
        torch.testing.assert_close(loaded(x), q(x), rtol=0, atol=0)


@pytest.mark.slow  # a second PT2E quantization of the model
def test_static_int8_rebuild_that_does_not_reproduce_the_saved_output_is_refused(static_saved, tmp_path):
    import shutil

    from safetensors import safe_open
    from safetensors.torch import save_file

    from secateurs.io.int8_static import CHECK
    from secateurs.io.saving import _sha256

    out = tmp_path / "copy"
    shutil.copytree(static_saved[0], out)
    factory = static_saved[2]
    path = out / INT8_WEIGHTS
    with safe_open(str(path), framework="pt") as f:
        tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()  # noqa: SIM118
    tensors[CHECK] = tensors[CHECK] + 1.0  # as if saved by another torch or quantized backend
    save_file(tensors, str(path), metadata=metadata)
    manifest = read_manifest(out)
    manifest["files"][INT8_WEIGHTS] = _sha256(path)
    (out / "manifest.json").write_text(__import__("json").dumps(manifest))
    with pytest.raises(FileFormatError, match="differs from the saved one"):
        sc.load(out, factory, int8=True)


@pytest.mark.slow
def test_static_int8_needs_the_example_input_to_be_saved(tmp_path):
    pytest.importorskip("torchao", reason="int8 static (PT2E) needs torchao")
    from secateurs.errors import InvalidArgumentError
    from secateurs.quantization.static import quantize_static_int8
    from secateurs.testing.models import ConcatNet

    model, x = ConcatNet().eval(), torch.randn(1, 3, 16, 16)
    report = sc.prune(model, x, ratio=0.5)
    q, _ = quantize_static_int8(model, x, [x], latency=False)
    with pytest.raises(InvalidArgumentError, match="input_spec"):
        sc.save(model, report.plan, tmp_path / "s", int8=q)
    assert not (tmp_path / "s").exists()
