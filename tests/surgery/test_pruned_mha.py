import copy

import pytest
import torch
from torch import nn

import secateurs as sc
from secateurs.errors import VerificationError
from secateurs.surgery.modules import PrunedMultiheadAttention


def _pair(**kwargs):
    stock = nn.MultiheadAttention(16, 4, **kwargs).eval()
    ours = copy.deepcopy(stock)
    ours.__class__ = PrunedMultiheadAttention
    return stock, ours


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("need_weights,average", [(False, True), (True, True), (True, False)])
@pytest.mark.parametrize("mask", ["none", "padding", "bool2d", "float3d", "both"])
def test_unpruned_equals_stock(batch_first, need_weights, average, mask):
    stock, ours = _pair(batch_first=batch_first)
    n, tgt, src = 2, 5, 7
    q = torch.randn(n, tgt, 16) if batch_first else torch.randn(tgt, n, 16)
    kv = torch.randn(n, src, 16) if batch_first else torch.randn(src, n, 16)
    kwargs = {}
    if mask in ("padding", "both"):
        pad = torch.zeros(n, src, dtype=torch.bool)
        pad[0, -2:] = True
        kwargs["key_padding_mask"] = pad
    if mask == "bool2d":
        kwargs["attn_mask"] = torch.rand(tgt, src) > 0.8
    if mask in ("float3d", "both"):
        kwargs["attn_mask"] = torch.randn(n * 4, tgt, src)
    with torch.no_grad():
        want = stock(q, kv, kv, need_weights=need_weights, average_attn_weights=average, **kwargs)
        got = ours(q, kv, kv, need_weights=need_weights, average_attn_weights=average, **kwargs)
    torch.testing.assert_close(got[0], want[0], atol=1e-5, rtol=1e-5)
    if need_weights:
        torch.testing.assert_close(got[1], want[1], atol=1e-5, rtol=1e-5)
    else:
        assert got[1] is None and want[1] is None


def test_unbatched_and_separate_kv_dims_equal_stock():
    stock, ours = _pair(kdim=8, vdim=12)
    q, k, v = torch.randn(5, 16), torch.randn(7, 8), torch.randn(7, 12)
    with torch.no_grad():
        want, want_w = stock(q, k, v)
        got, got_w = ours(q, k, v)
    assert got.shape == (5, 16) and got_w.shape == (5, 7)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_w, want_w, atol=1e-5, rtol=1e-5)


class _SelfAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(32, 8, batch_first=True)
        self.head = nn.Linear(32, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.attn(x, x, x, need_weights=False)[0])


def test_pruning_heads_swaps_class_and_matches_masked_original():
    model = _SelfAttention().eval()
    x = torch.randn(2, 6, 32)
    report = sc.prune(model, x, ratio={"heads": 0.25})
    assert type(model.attn) is PrunedMultiheadAttention
    assert model.attn.num_heads == 6 and model.attn.head_dim == 4 and model.attn.embed_dim == 32
    assert model.attn.in_proj_weight.shape == (3 * 24, 32)
    assert report.verification.ok and report.verification.mode == "exact"
    assert report.verification.rel_error < 1e-5
    assert model(x).shape == (2, 6, 3)


def test_failed_verification_restores_the_stock_class():
    model = _SelfAttention().eval()
    x = torch.randn(2, 6, 32)
    before = model(x)
    with pytest.raises(VerificationError):
        sc.prune(model, x, ratio={"heads": 0.25}, tolerance=1e-30)  # no float result is that close
    assert type(model.attn) is nn.MultiheadAttention and model.attn.num_heads == 8
    torch.testing.assert_close(model(x), before)


class _Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
        self.head = nn.Linear(32, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.enc(x))


def test_transformer_encoder_layer_fast_path_does_not_bypass_pruned_attention():
    model = _Encoder().eval()
    x = torch.randn(2, 5, 32)
    report = sc.prune(model, x, ratio={"heads": 0.5})
    attn = model.enc.self_attn
    assert type(attn) is PrunedMultiheadAttention and attn.num_heads == 2
    assert attn._qkv_same_embed_dim is False and attn._packed_qkv is True
    assert report.verification.ok and report.verification.mode == "exact"
    with torch.no_grad():  # eval + no_grad is where the fused path would run
        assert model(x).shape == (2, 5, 3)
