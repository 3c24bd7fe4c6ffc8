"""sc.verify with the state dict taken before pruning: the unpruned model is rebuilt and checked."""

import copy

import pytest
import torch
from torch import nn

import secateurs as sc
from secateurs.errors import InvalidTypeError, VerificationError
from secateurs.plans import Plan
from secateurs.surgery.restore import rebuild_original
from secateurs.testing.models import ConcatNet, TinyResNet, TinyViT
from secateurs.testing.toys import ConvBN, GroupedQueryAttention, MultiHeadAttention


class _TorchMHA(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(8, 16)
        self.attn = nn.MultiheadAttention(16, 4, batch_first=True)
        self.out = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        return self.out(self.attn(h, h, h, need_weights=False)[0] + h)


CASES = {
    "convbn": (ConvBN, lambda: torch.randn(2, 3, 8, 8)),
    "resnet": (TinyResNet, lambda: torch.randn(2, 3, 16, 16)),
    "concat": (ConcatNet, lambda: torch.randn(2, 3, 8, 8)),
    "mha": (MultiHeadAttention, lambda: torch.randn(2, 5, 16)),
    "gqa": (GroupedQueryAttention, lambda: torch.randn(2, 5, 16)),
    "torch_mha": (_TorchMHA, lambda: torch.randn(2, 5, 8)),
    "vit": (TinyViT, lambda: torch.randn(2, 3, 16, 16)),
}


def _prune(model: nn.Module, x, ratio):
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    p = sc.plan(model, x, ratio=ratio)
    sc.apply(model, p)
    return before, p


@pytest.mark.parametrize("name", sorted(CASES))
def test_rebuilt_reference_equals_the_original(name):
    torch.manual_seed(0)
    factory, inputs = CASES[name]
    original = factory().eval()
    x = inputs()
    pruned = copy.deepcopy(original)
    before, p = _prune(pruned, x, 0.5)
    assert p.removed_units() > 0
    rebuilt = rebuild_original(pruned, p, before)
    assert {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()} == {
        k: tuple(v.shape) for k, v in original.state_dict().items()}
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), original(x), atol=1e-6, rtol=1e-6)
    result = sc.verify(before, pruned, p, x)
    assert result.ok, result.message
    # the pruned model itself is untouched by rebuilding
    assert sum(t.numel() for t in pruned.parameters()) < sum(t.numel() for t in original.parameters())


def test_rebuild_replays_from_json_plan():
    torch.manual_seed(0)
    model, x = TinyResNet().eval(), torch.randn(2, 3, 16, 16)
    before, p = _prune(model, x, 0.4)
    replayed = Plan.from_json(p.to_json())
    assert replayed.hints_before == p.hints_before
    assert sc.verify(before, model, replayed, x).ok


def test_hf_llama_state_dict_reference():
    pytest.importorskip("transformers")
    from secateurs.testing.hf import tiny

    t = tiny("llama")
    model = t.model.eval()
    original = copy.deepcopy(model)
    before, p = _prune(model, t.inputs, {"heads": 0.5, "ffn": 0.5})
    assert p.hints_before  # num_heads / num_key_value_heads etc. were rewritten
    rebuilt = rebuild_original(model, p, before)
    assert rebuilt.config.intermediate_size == original.config.intermediate_size
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(**t.inputs).logits, original(**t.inputs).logits, atol=1e-5, rtol=1e-5)
    assert sc.verify(before, model, p, t.inputs).ok


def test_wrong_state_dict_is_a_clear_error():
    torch.manual_seed(0)
    model, x = ConvBN().eval(), torch.randn(2, 3, 8, 8)
    _, p = _prune(model, x, 0.5)
    with pytest.raises(VerificationError, match="BEFORE pruning"):
        sc.verify(model.state_dict(), model, p, x)
    with pytest.raises(VerificationError, match="has no tensor"):
        sc.verify({}, model, p, x)
    with pytest.raises(InvalidTypeError, match="state dict"):
        sc.verify([1, 2], model, p, x)


def test_old_plan_without_hints_before_says_what_to_do():
    torch.manual_seed(0)
    model, x = _TorchMHA().eval(), torch.randn(2, 5, 8)
    before, p = _prune(model, x, 0.5)
    assert p.hints
    p.hints_before = {}
    with pytest.raises(VerificationError, match="unpruned module"):
        sc.verify(before, model, p, x)
