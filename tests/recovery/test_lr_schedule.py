"""The lr schedule of the SGD recover builds: cosine decay with optional warm-up, constant, unknown length."""

import pytest
import torch

import secateurs as sc
from secateurs.errors import InvalidArgumentError
from secateurs.recovery.config import RecoverConfig
from secateurs.recovery.schedule import factor


def test_factor_shapes():
    assert [factor("constant", s, 10, 0.0) for s in (0, 5, 9)] == [1.0, 1.0, 1.0]
    assert factor("cosine", 0, 10, 0.0) == 1.0 and factor("cosine", 5, 10, 0.0) == pytest.approx(0.5)
    assert factor("cosine", 10, 10, 0.0) == pytest.approx(0.0, abs=1e-12)
    assert [factor("cosine", s, 10, 0.2) for s in (0, 1)] == [0.5, 1.0]  # 2 warm-up steps
    assert factor("cosine", 7, None, 0.0) == 1.0  # data without a length: constant


def test_recover_follows_the_schedule_only_for_its_own_sgd():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    data = [(torch.randn(8, 4), torch.randint(0, 3, (8,))) for _ in range(4)]
    seen = []
    hook = torch.optim.SGD.register_step_pre_hook if False else None  # noqa: F841
    orig = torch.optim.SGD.step

    def spy(self, *a, **k):
        seen.append(self.param_groups[0]["lr"])
        return orig(self, *a, **k)

    torch.optim.SGD.step = spy
    try:
        sc.recover(model, data, epochs=2, lr=0.1, progress=False)
        assert seen[0] == pytest.approx(0.1) and seen[-1] < 0.01 and seen == sorted(seen, reverse=True)
        seen.clear()
        sc.recover(model, data, epochs=1, optimizer=lambda p: torch.optim.SGD(p, lr=0.3), progress=False)
        assert seen == [0.3] * 4  # a factory keeps its own lr
    finally:
        torch.optim.SGD.step = orig


def test_defaults_and_validation():
    cfg = RecoverConfig()
    assert (cfg.epochs, cfg.lr, cfg.schedule, cfg.temperature) == (3, 0.02, "cosine", 2.0)
    for bad in ({"schedule": "step"}, {"warmup": 1.0}, {"warmup": True}, {"qat": "int4"}):
        with pytest.raises(InvalidArgumentError):
            RecoverConfig.make(None, bad)
