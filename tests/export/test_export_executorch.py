"""ExecuTorch export: the .pte written for XNNPACK runs in executorch's runtime and matches PyTorch (fp32, int8)."""

import pytest
import torch

pytest.importorskip("executorch.runtime", reason="executorch export needs executorch: pip install 'secateurs[edge]'")

import secateurs as sc  # noqa: E402
from secateurs.errors import InvalidArgumentError  # noqa: E402
from secateurs.export.executorch import export_executorch, run_pte  # noqa: E402
from secateurs.testing.models import TinyResNet  # noqa: E402


@pytest.fixture(scope="module")
def pruned():
    torch.manual_seed(0)
    model, x = TinyResNet().eval(), torch.randn(1, 3, 16, 16)
    sc.prune(model, x, ratio=0.5)
    return model, x


def test_fp32_pte_runs_and_matches(pruned, tmp_path):
    model, x = pruned
    info = export_executorch(model, x, tmp_path / "m.pte", repeats=2)
    assert info["parity_ok"] and info["max_abs_diff"] < 1e-4 * info["ref_max_abs"]
    assert info["dtype"] == "fp32" and info["bytes"] > 0 and info["runtime_latency_ms"] > 0
    other = torch.randn(1, 3, 16, 16)  # not only the traced input
    torch.testing.assert_close(run_pte(tmp_path / "m.pte", other)[0], model(other), rtol=1e-4, atol=1e-4)


def test_int8_pte_matches_the_quantized_reference(pruned, tmp_path):
    model, x = pruned
    cal = [torch.randn(4, 3, 16, 16) for _ in range(3)]
    info = export_executorch(model, x, tmp_path / "q.pte", int8=True, calibration=cal, repeats=2)
    assert info["parity_ok"] and info["dtype"] == "int8"
    assert info["max_abs_diff_vs_fp32"] < 0.2 * info["ref_max_abs"]  # int8, not garbage
    with pytest.raises(InvalidArgumentError, match="calibration"):
        export_executorch(model, x, tmp_path / "n.pte", int8=True, calibration=[])
