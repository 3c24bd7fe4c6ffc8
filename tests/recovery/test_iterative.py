import json

import pytest
import torch
from recovery_data import image_batches, small_cnn

import secateurs as sc
from secateurs.errors import InvalidArgumentError
from secateurs.recovery import geometric_schedule, linear_schedule, load_checkpoint

X = torch.randn(1, 1, 8, 8)
STEPS = [0.25, 0.5, 0.75]


class Crash(RuntimeError):
    pass


def _recover(crash_at: int | None = None):
    def fn(model, info):
        if info.index == crash_at:
            raise Crash(f"simulated crash in step {info.index}")
        return sc.recover(model, image_batches(n=2), epochs=1, lr=0.05, seed=info.seed)

    return fn


def _fresh():
    torch.manual_seed(0)
    return small_cnn()


def test_schedules():
    assert linear_schedule(0.6, 3) == pytest.approx([0.2, 0.4, 0.6])
    g = geometric_schedule(0.75, 2)
    assert g == pytest.approx([0.5, 0.75])
    with pytest.raises(InvalidArgumentError):
        linear_schedule(1.0, 2)
    with pytest.raises(InvalidArgumentError, match="must not decrease"):
        sc.iterative_prune(_fresh(), X, [0.5, 0.25])


def test_resume_after_crash_equals_uninterrupted_run(tmp_path):
    reference = _fresh()
    full = sc.iterative_prune(reference, X, STEPS, recover_fn=_recover(), checkpoint_dir=tmp_path / "a")
    assert [r.index for r in full.steps] == [0, 1, 2] and full.resumed_from == 0
    assert reference[0].out_channels == 2  # 8 channels, 75% removed in total
    assert full.steps[0].params > full.steps[1].params > full.steps[2].params

    crashed = _fresh()
    with pytest.raises(Crash):
        sc.iterative_prune(crashed, X, STEPS, recover_fn=_recover(crash_at=2), checkpoint_dir=tmp_path / "b")
    index = json.loads((tmp_path / "b" / "checkpoint.json").read_text())
    assert index["completed"] == 2 and len(index["plans"]) == 2
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["checkpoint.json", "step_002.safetensors"]

    resumed_model = _fresh()
    resumed = sc.iterative_prune(resumed_model, X, STEPS, recover_fn=_recover(), checkpoint_dir=tmp_path / "b")
    assert resumed.resumed_from == 2 and [r.index for r in resumed.steps] == [2]
    assert [p.to_json() for p in resumed.plans] == [p.to_json() for p in full.plans]
    expected = reference.state_dict()
    for k, v in resumed_model.state_dict().items():
        assert torch.equal(v, expected[k]), k

    loaded = load_checkpoint(_fresh(), tmp_path / "b")
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, expected[k]), k


def test_resume_refuses_a_different_run(tmp_path):
    sc.iterative_prune(_fresh(), X, [0.5], checkpoint_dir=tmp_path)
    with pytest.raises(InvalidArgumentError, match="does not start"):
        sc.iterative_prune(_fresh(), X, [0.25, 0.5], checkpoint_dir=tmp_path)
    with pytest.raises(InvalidArgumentError, match="settings"):
        sc.iterative_prune(_fresh(), X, [0.5], checkpoint_dir=tmp_path, importance="l1")
    torch.manual_seed(0)
    with pytest.raises(InvalidArgumentError, match="another architecture"):
        sc.iterative_prune(small_cnn(width=16), X, [0.5], checkpoint_dir=tmp_path)
    # a longer schedule extends a finished run
    extended = sc.iterative_prune(_fresh(), X, [0.5, 0.75], checkpoint_dir=tmp_path)
    assert extended.resumed_from == 1 and extended.model[0].out_channels == 2


def test_check_verifies_each_step():
    result = sc.iterative_prune(_fresh().eval(), X, [0.25, 0.5], check=True)
    assert all(r.verification and "relative error" in r.verification for r in result.steps)
