"""Reverse KL distillation (MiniLLM) beside forward KL, and every registered distillation loss."""

import pytest
import torch
import torch.nn.functional as F

import secateurs as sc
from secateurs.errors import InvalidArgumentError
from secateurs.recovery.distill import DISTILL_LOSSES, get_distill_loss, kd_loss, reverse_kd_loss


@pytest.mark.parametrize("name", sorted(DISTILL_LOSSES))
def test_every_distill_loss_is_zero_at_the_teacher_and_positive_elsewhere(name):
    loss = get_distill_loss(name)
    torch.manual_seed(0)
    t = torch.randn(3, 5, 7)
    s = torch.randn(3, 5, 7, requires_grad=True)
    assert loss(t, t, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    value = loss(s, t, 2.0)
    assert value.item() > 1e-3
    value.backward()
    assert s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0


def test_reverse_kl_is_kl_of_student_from_teacher():
    torch.manual_seed(0)
    s, t = torch.randn(4, 6, 9), torch.randn(4, 6, 9)
    T = 2.0
    q, p = F.softmax(s / T, -1), F.softmax(t / T, -1)
    manual = (q * (q.log() - p.log())).sum(-1).mean() * T * T
    torch.testing.assert_close(reverse_kd_loss(s, t, T), manual)
    torch.testing.assert_close(reverse_kd_loss(s, t, T), kd_loss(t, s, T))  # KL(q||p) is forward KL with roles swapped
    assert abs(reverse_kd_loss(s, t, T).item() - kd_loss(s, t, T).item()) > 1e-3  # not symmetric
    with pytest.raises(InvalidArgumentError, match="same shape"):
        reverse_kd_loss(s, t[..., :3])
    with pytest.raises(InvalidArgumentError, match="temperature"):
        reverse_kd_loss(s, t, 0.0)


def test_reverse_kl_is_mode_seeking():
    """A student that covers one of two teacher modes: reverse KL is small, forward KL large; a student spread
    over both modes and a third outcome: the other way round."""
    teacher = torch.tensor([[0.5, 0.5, 0.0]]).clamp(min=1e-6).log()
    one_mode = torch.tensor([[0.98, 0.01, 0.01]]).log()
    assert reverse_kd_loss(one_mode, teacher, 1.0) < kd_loss(one_mode, teacher, 1.0)


class _TinyLM(torch.nn.Module):
    def __init__(self, vocab: int = 11, width: int = 8):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, width)
        self.out = torch.nn.Linear(width, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.emb(ids)))


def test_recover_with_reverse_kl_moves_the_student_to_the_teacher():
    torch.manual_seed(0)
    teacher, student = _TinyLM(), _TinyLM()
    data = [(torch.randint(0, 11, (4, 6)), None) for _ in range(4)]

    def gap() -> float:
        with torch.no_grad():
            return sum(reverse_kd_loss(student(x), teacher(x)).item() for x, _ in data)

    before = gap()
    result = sc.recover(student, data, teacher=teacher, distill_loss="reverse_kl", temperature=1.0, epochs=15,
                        lr=0.5, progress=False)
    assert result.epochs[-1].distill < result.epochs[0].distill
    assert gap() < 0.5 * before
