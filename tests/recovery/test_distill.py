import math

import pytest
import torch
import torch.nn.functional as F
from recovery_data import image_batches, mlp, small_cnn, vector_batches

import secateurs as sc
from secateurs.errors import InvalidArgumentError
from secateurs.recovery import RecoverConfig, kd_loss


def test_kd_loss_known_value():
    # teacher probabilities at T=2: softmax([ln 9, 0] / 2) = softmax([ln 3, 0]) = [3/4, 1/4]; student uniform
    s = torch.zeros(1, 2)
    t = torch.tensor([[math.log(9.0), 0.0]])
    expected = (0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)) * 2.0**2
    assert kd_loss(s, t, temperature=2.0).item() == pytest.approx(expected, rel=1e-6)


def test_kd_loss_is_batch_mean_kl_times_t_squared():
    torch.manual_seed(0)
    s, t = torch.randn(5, 7), torch.randn(5, 7)
    T = 3.0
    p = F.softmax(t / T, -1)
    manual = (p * (p.log() - F.log_softmax(s / T, -1))).sum(-1).mean() * T * T
    torch.testing.assert_close(kd_loss(s, t, T), manual)
    assert kd_loss(t, t, T).item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(InvalidArgumentError):
        kd_loss(s, t[:, :3])
    with pytest.raises(InvalidArgumentError):
        kd_loss(s, t, temperature=0)


def test_finetune_reduces_loss_and_is_seeded(capsys):
    data = image_batches()
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        m = small_cnn()
        result = sc.recover(m, data, epochs=3, lr=0.05, seed=1)
        runs.append((m, result))
    (m1, r1), (m2, r2) = runs
    assert len(r1.epochs) == 3 and r1.steps == 3 * len(data)
    assert r1.losses[-1] < r1.losses[0]
    assert r1.losses == r2.losses
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""  # the library never prints (no tty: no progress bar)


def test_pure_distillation_without_targets_matches_teacher():
    data = image_batches()
    torch.manual_seed(0)
    teacher = small_cnn(16)
    sc.recover(teacher, data, epochs=2, lr=0.05, progress=False)
    student = small_cnn(4)
    unlabeled = [(x, None) for x, _ in data]
    result = sc.recover(student, unlabeled, teacher=teacher, epochs=4, lr=0.05, temperature=2.0)
    assert all(e.task is None and e.distill is not None for e in result.epochs)
    assert result.epochs[-1].distill < result.epochs[0].distill
    assert teacher.training  # modes restored
    mixed = sc.recover(student, data, teacher=teacher, alpha=0.5, steps=1)  # loss=None: cross-entropy
    assert mixed.epochs[0].task is not None


def test_mixed_loss_and_feature_matching_with_projection():
    data = image_batches(n=3)
    torch.manual_seed(0)
    teacher, student = small_cnn(16).eval(), small_cnn(4)
    result = sc.recover(student, data, teacher=teacher, loss=F.cross_entropy, alpha=0.3,
                        feature_pairs={"4": "4", "7": "7"}, epochs=3, lr=0.05)
    e = result.epochs[0]
    assert e.task is not None and e.distill is not None and e.features is not None
    assert e.loss == pytest.approx(0.7 * e.task + 0.3 * e.distill + e.features, rel=1e-5)
    assert result.epochs[-1].features < result.epochs[0].features
    assert not any(m._forward_hooks for m in list(student.modules()) + list(teacher.modules()))
    assert not teacher.training


def test_grad_accum_equals_big_batch():
    small = vector_batches(n=4, batch=4)
    big = [(torch.cat([small[i][0], small[i + 1][0]]), torch.cat([small[i][1], small[i + 1][1]])) for i in (0, 2)]
    torch.manual_seed(0)
    a = mlp()
    b = mlp()
    b.load_state_dict(a.state_dict())
    sc.recover(a, small, grad_accum=2, epochs=2, lr=0.1)
    sc.recover(b, big, epochs=2, lr=0.1)
    for x, y in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(x, y)


def test_steps_cycles_data_and_early_stop_restores_best():
    data = vector_batches(n=3)
    m = mlp()
    assert sc.recover(m, data, steps=7).steps == 7
    values = iter([0.5, 0.9, 0.4, 0.3, 0.2])
    seen = []

    def metric(model):
        seen.append({k: v.clone() for k, v in model.state_dict().items()})
        return next(values)

    result = sc.recover(m, data, epochs=5, metric=metric, patience=2, restore_best=True)
    assert result.stopped_early and len(result.epochs) == 4
    assert result.best_metric == 0.9 and result.best_epoch == 1
    assert result.metrics == [0.5, 0.9, 0.4, 0.3]
    for k, v in m.state_dict().items():
        assert torch.equal(v, seen[1][k])


def test_clear_errors_for_bad_arguments():
    data = vector_batches(n=2)
    m = mlp()
    with pytest.raises(InvalidArgumentError, match="amp_dtype must be"):
        sc.recover(m, data, amp=True, amp_dtype="float8")
    with pytest.raises(InvalidArgumentError, match="unknown distill_loss 'l1'"):
        sc.recover(m, data, teacher=mlp(), distill_loss="l1")
    with pytest.raises(InvalidArgumentError, match="unknown recover option"):
        sc.recover(m, data, epoch=2)
    with pytest.raises(InvalidArgumentError, match="no teacher"):
        sc.recover(m, data, alpha=0.5)
    with pytest.raises(InvalidArgumentError, match="iterated only once"):
        sc.recover(m, (b for b in data), epochs=2)
    with pytest.raises(TypeError, match="inputs, targets"):
        sc.recover(m, [torch.randn(2, 6)])
    with pytest.raises(InvalidArgumentError, match="cross-entropy needs targets"):
        sc.recover(m, [(x, None) for x, _ in data])
    with pytest.raises(InvalidArgumentError, match="feature_pairs need a teacher"):
        sc.recover(m, data, feature_pairs=["0"])
    with pytest.raises(InvalidArgumentError, match="no module named"):
        sc.recover(m, data, teacher=mlp(), feature_pairs=["nope"])


def test_config_object_and_dict_inputs():
    class DictModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = mlp()

        def forward(self, features):
            return self.net(features)

    data = [({"features": x}, y) for x, y in vector_batches(n=2)]
    cfg = RecoverConfig(epochs=2, lr=0.05)
    result = sc.recover(DictModel(), data, config=cfg, seed=3)
    assert len(result.epochs) == 2
    assert RecoverConfig(feature_pairs={"a": "b"}).to_dict()["feature_pairs"] == [["a", "b"]]


def test_shard_and_sharded_loader_split_data_evenly():
    from secateurs.recovery.distributed import Shard, sharded_loader

    data = list(range(7))
    assert list(Shard(data, 0, 2)) == [0, 2, 4] and list(Shard(data, 1, 2)) == [1, 3, 5]  # tail dropped
    assert list(Shard(iter(data), 1, 2)) == [1, 3, 5]
    loader = sharded_loader(torch.utils.data.TensorDataset(torch.arange(10.0), torch.arange(10)), batch_size=4)
    result = sc.recover(torch.nn.Linear(1, 10), [(x[:, None], y) for x, y in loader], epochs=1)
    assert result.steps == 3


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_amp_on_cuda():
    data = [(x.cuda(), y.cuda()) for x, y in image_batches(n=3)]
    m = small_cnn().cuda()
    result = sc.recover(m, data, teacher=small_cnn(16).cuda(), loss=F.cross_entropy, epochs=2, amp="auto")
    assert all(math.isfinite(loss) for loss in result.losses)


def test_logits_and_feature_pairs_accept_common_forms():
    from types import SimpleNamespace

    from secateurs.recovery.distill import logits_of, parse_feature_pairs

    t = torch.randn(2, 3)
    for out in (t, (t, None), [t], {"logits": t}, SimpleNamespace(logits=t)):
        assert logits_of(out) is t
    with pytest.raises(TypeError, match="cannot find logits"):
        logits_of("nope")
    assert parse_feature_pairs(["a", ("b", "c")]) == [("a", "a"), ("b", "c")]
    assert parse_feature_pairs({"s": "t"}) == [("s", "t")]
