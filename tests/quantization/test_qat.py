"""QAT: recover(qat="int8") trains the fake-quantized graph, convert_int8 gives an int8 model that saves and reloads."""

import copy

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("torchao", reason="QAT (PT2E) needs torchao: pip install 'secateurs[edge]'")

import secateurs as sc  # noqa: E402
from secateurs.errors import InvalidArgumentError  # noqa: E402
from secateurs.io.inputs import InputSpec  # noqa: E402
from secateurs.quantization.qat import qat_state  # noqa: E402
from secateurs.testing.models import TinyResNet  # noqa: E402


def _data(n=3, batch=8):
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(batch, 3, 16, 16, generator=g), torch.randint(0, 10, (batch,), generator=g)) for _ in range(n)]


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    spec = InputSpec(shape=(1, 3, 16, 16))
    model, x = TinyResNet().eval(), spec.make()
    teacher = copy.deepcopy(model)
    report = sc.prune(model, x, ratio=0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = sc.recover(model, _data(), teacher=teacher, loss=F.cross_entropy, alpha=0.5, qat="int8", epochs=2,
                        progress=False)
    return model, x, spec, report.plan, before, result


@pytest.mark.slow  # trains with fake quantization and converts: minutes on 2 cores
def test_qat_trains_the_student_and_converts(trained):
    model, x, _, _, before, result = trained
    assert len(result.epochs) == 2 and result.steps == 6
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())  # weights were trained
    assert set(model.state_dict()) == set(before)  # no fake-quant state leaks into the float model
    assert qat_state(model) is not None
    q = sc.convert_int8(model, x)
    assert any("onednn.qconv" in str(n.target) for n in q.graph.nodes)
    xb = torch.randn(5, 3, 16, 16)  # another batch size than the captured one
    out, ref = q(xb), model.eval()(xb)
    assert out.shape == ref.shape and float((out - ref).norm() / ref.norm()) < 0.3


@pytest.mark.slow
def test_qat_int8_saves_and_reloads_bit_for_bit(trained, tmp_path):
    from secateurs.io import read_manifest

    model, x, spec, plan, _, _ = trained
    q = sc.convert_int8(model, x)  # converted from a copy of the trained graph: other fx names than the rebuild
    out = sc.save(model, plan, tmp_path / "q", int8=q, input_spec=spec)
    assert read_manifest(out)["int8"] == {"mode": "static", "backend": "x86", "flow": "qat",
                                          "file": "model.int8.safetensors"}
    loaded = sc.load(out, TinyResNet, int8=True)
    assert any("onednn.qconv" in str(n.target) for n in loaded.graph.nodes)
    for xb in (x, spec.make(seed=5), torch.randn(3, 3, 16, 16)):  # the recorded input, another, another batch size
        torch.testing.assert_close(loaded(xb), q(xb), rtol=0, atol=0)
    ptq = sc.convert_int8(model, x, calibration=[x])  # the post-training path still saves and reloads exactly
    loaded = sc.load(sc.save(model, plan, tmp_path / "p", int8=ptq, input_spec=spec), TinyResNet, int8=True)
    torch.testing.assert_close(loaded(x), ptq(x), rtol=0, atol=0)


def test_qat_refuses_one_shot_data_and_feature_pairs():
    model = TinyResNet()
    with pytest.raises(InvalidArgumentError, match="one-shot"):
        sc.recover(model, iter(_data()), qat="int8", progress=False)
    with pytest.raises(InvalidArgumentError, match="feature_pairs"):
        sc.recover(model, _data(), teacher=TinyResNet(), feature_pairs=["fc"], qat="int8", progress=False)
