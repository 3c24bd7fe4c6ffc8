"""Tests of the neutral check: ``python -m pytest bench/test_checks.py -q``."""

from __future__ import annotations

import torch
from checks import NotASubTensor, kept_indices, masked_check
from torch import nn


def test_kept_indices_recovers_every_dim_despite_duplicate_values() -> None:
    g = torch.Generator().manual_seed(0)
    orig = torch.randn(12, 10, 3, 3, generator=g)
    orig[5, :, 0, 0] = orig[7, :, 0, 0] = 0.25  # repeats inside and across kept slices
    keep0, keep1 = torch.tensor([1, 5, 7, 11]), torch.tensor([0, 3, 4, 9])
    new = orig.index_select(0, keep0).index_select(1, keep1)
    got = kept_indices(orig, new)
    assert set(got) == {0, 1}
    assert torch.equal(got[0], keep0) and torch.equal(got[1], keep1)


def test_kept_indices_rejects_changed_values() -> None:
    orig = torch.randn(8, 4)
    new = orig[:4].clone()
    new[0, 0] += 1.0
    try:
        kept_indices(orig, new)
    except NotASubTensor:
        return
    raise AssertionError("a modified tensor was accepted as a sub-tensor")


def test_kept_indices_refuses_to_guess_in_a_constant_tensor() -> None:
    try:
        kept_indices(torch.ones(8), torch.ones(4))
    except NotASubTensor:
        return
    raise AssertionError("guessed kept indices of a constant tensor")


def _pruned_pair(wrong: bool, constant_norm: bool = False) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    ref = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1)).eval()
    if not constant_norm:
        with torch.no_grad():
            for t in (ref[1].weight, ref[1].bias, ref[1].running_mean):
                t.normal_()
            ref[1].running_var.uniform_(0.5, 1.5)
    keep = torch.tensor([0, 2, 3, 6])
    small = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 1)).eval()
    with torch.no_grad():
        small[0].weight.copy_(ref[0].weight[keep])
        small[0].bias.copy_(ref[0].bias[keep])
        bn_keep = torch.tensor([0, 2, 3, 7]) if wrong else keep
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(small[1], name).copy_(getattr(ref[1], name)[bn_keep])
        small[3].weight.copy_(ref[3].weight[:, keep])
        small[3].bias.copy_(ref[3].bias)
    return ref, small


def test_masked_check_passes_a_correct_pruning_and_catches_a_wrong_norm_channel() -> None:
    x = torch.randn(2, 3, 9, 9)
    ok = masked_check(*_pruned_pair(wrong=False), x)
    assert ok["ok"] and ok["mode"] == "exact", ok
    bad = masked_check(*_pruned_pair(wrong=True), x)
    assert not bad["ok"] and bad["mode"] == "exact", bad


def test_masked_check_falls_back_to_structural_when_norm_tensors_are_constant() -> None:
    res = masked_check(*_pruned_pair(wrong=False, constant_norm=True), torch.randn(2, 3, 9, 9))
    assert res["ok"] and res["mode"] == "structural", res
