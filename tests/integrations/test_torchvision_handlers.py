import copy

import pytest
import torch

pytest.importorskip("torchvision")
from torchvision.models.maxvit import RelativePositionalMultiHeadAttention  # noqa: E402
from torchvision.models.swin_transformer import ShiftedWindowAttention, ShiftedWindowAttentionV2  # noqa: E402

from secateurs.integrations.torchvision.handlers import (  # noqa: E402
    relative_positional_attention,
    shifted_window_attention,
)
from secateurs.integrations.torchvision.modules import (  # noqa: E402
    PrunedRelativePositionalMultiHeadAttention,
    PrunedShiftedWindowAttention,
    PrunedShiftedWindowAttentionV2,
)


@pytest.mark.parametrize("cls,pruned", [(ShiftedWindowAttention, PrunedShiftedWindowAttention),
                                        (ShiftedWindowAttentionV2, PrunedShiftedWindowAttentionV2)])
@pytest.mark.parametrize("shift", [[0, 0], [2, 2]])
def test_swin_replacement_equals_stock_when_unpruned(cls, pruned, shift):
    stock = cls(24, [4, 4], shift, num_heads=3).eval()
    ours = copy.deepcopy(stock)
    shifted_window_attention(ours, {})
    assert type(ours) is pruned and ours.num_heads == 3 and ours.head_dim == 8
    x = torch.randn(2, 10, 9, 24)  # not a multiple of the window: exercises padding
    with torch.no_grad():
        torch.testing.assert_close(ours(x), stock(x), atol=1e-5, rtol=1e-5)


def test_swin_handler_keeps_the_original_scale_when_head_dim_shrinks():
    m = ShiftedWindowAttention(24, [4, 4], [0, 0], num_heads=3)
    with torch.no_grad():
        m.qkv.weight = torch.nn.Parameter(m.qkv.weight[: 3 * 3 * 6])  # 3 heads of 6 instead of 8
        m.qkv.bias = torch.nn.Parameter(m.qkv.bias[: 3 * 3 * 6])
    shifted_window_attention(m, {"shapes_before": {"qkv.weight": (72, 24)}})
    assert (m.num_heads, m.head_dim) == (3, 6)
    assert m.scale == pytest.approx(8 ** -0.5)


def test_maxvit_replacement_equals_stock_when_unpruned():
    stock = RelativePositionalMultiHeadAttention(32, 8, 16).eval()
    ours = copy.deepcopy(stock)
    relative_positional_attention(ours, {})
    assert type(ours) is PrunedRelativePositionalMultiHeadAttention and (ours.n_heads, ours.head_dim) == (4, 8)
    x = torch.randn(2, 3, 16, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), stock(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["googlenet", "inception_v3"])
def test_models_with_auxiliary_classifiers_are_refused(name):
    import torchvision

    from secateurs.errors import ApplyError
    from secateurs.surgery.registry import find_handler, load_for

    model = torchvision.models.get_model(name, weights=None, aux_logits=True, init_weights=False)
    load_for(model)
    with pytest.raises(ApplyError, match="aux_logits=False"):
        find_handler(model)(model, {})
    without = torchvision.models.get_model(name, weights=None, aux_logits=False, init_weights=False)
    find_handler(without)(without, {})  # no aux heads: nothing to refuse


class _MaxVitAttention(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = torch.nn.Linear(8, 32)
        self.attn = RelativePositionalMultiHeadAttention(32, 8, 16)
        self.out = torch.nn.Linear(32, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.attn(self.inp(x)))


def test_maxvit_attention_prunes_heads_and_head_dim_exactly():
    import secateurs as sc

    model = _MaxVitAttention().eval()
    x = torch.randn(1, 2, 16, 8)
    report = sc.prune(model, x, ratio=0.3)
    assert type(model.attn) is PrunedRelativePositionalMultiHeadAttention
    # heads (4 units) and head_dim (8 units) overlap; selection prunes one of them, not both
    # (algorithms/overlap.py), so 30% of the 32-wide attention goes as 2 of every head's 8 dims
    assert (model.attn.n_heads, model.attn.head_dim) == (4, 6)
    assert report.verification.ok and report.verification.mode == "exact"
    assert report.verification.rel_error < 1e-5
    assert model(x).shape == (1, 2, 16, 3)
