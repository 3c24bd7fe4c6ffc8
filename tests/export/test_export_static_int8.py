import pytest

pytest.importorskip("torchao", reason="int8 static (PT2E) needs torchao: pip install 'secateurs[edge]'")
import torch
from torch import nn

from secateurs.errors import InvalidArgumentError
from secateurs.quantization.static import quantize_static_int8
from secateurs.testing.models import TinyResNet


def test_static_int8_quantizes_convs_and_keeps_the_model():
    torch.manual_seed(0)
    model = TinyResNet().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, 16, 16)
    qmodel, stats = quantize_static_int8(model, x, [torch.randn(2, 3, 16, 16) for _ in range(4)], latency=False)
    assert stats["quantized"]["conv"] >= 10 and stats["calibration_batches"] == 4
    assert stats["rel_error"] < 0.1 and stats["top1_agreement"] >= 0.5
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    ops = {str(n.target) for n in qmodel.graph.nodes if n.op == "call_function"}
    assert any("onednn.qconv" in op for op in ops)  # lowered to oneDNN int8 kernels, not FX quantized modules
    assert "secateurs_int8" in qmodel.meta and not hasattr(model, "graph")


class _Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: symbolic tracing cannot follow it
            return self.conv(x)
        return self.conv(-x)


def test_uncapturable_model_gets_a_clear_error():
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(InvalidArgumentError, match="torch.export can capture"):
        quantize_static_int8(_Branchy().eval(), x, [x])


def test_bad_arguments():
    model, x = TinyResNet().eval(), torch.randn(1, 3, 16, 16)
    with pytest.raises(InvalidArgumentError, match="at least one calibration batch"):
        quantize_static_int8(model, x, [], latency=False)
    with pytest.raises(InvalidArgumentError, match="unknown quantization backend"):
        quantize_static_int8(model, x, [x], backend="tpu")
