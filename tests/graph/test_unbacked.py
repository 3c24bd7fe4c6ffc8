"""Sizes that depend on the input values (tokens gathered per expert with ``torch.where``): captured with
draft_export at the example's values, the expert widths prune exactly, and a data-dependent size is never pruned."""

import warnings

import pytest
import torch

import secateurs as sc
from secateurs.graph.analysis import analyze
from secateurs.testing.moe_gather import DataSizedSlice, GatheredMoE, HitLoopMoE, SplitLoopMoE


def _quiet_analyze(model: torch.nn.Module, x: torch.Tensor):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return analyze(model, (x,))


def test_experts_gathering_tokens_with_where_prune_their_width_exactly():
    torch.manual_seed(0)
    model = GatheredMoE(hidden=8, inner=16, experts=4).eval()
    x = torch.randn(2, 6, 8)
    reference = model(x).detach()
    with pytest.warns(UserWarning, match="sizes depend on the input values"):
        report = sc.prune(model, (x,), ratio={"ffn": 0.5})
    assert report.verification.ok and report.verification.mode == "exact"
    assert [up.out_features for up in model.up] == [8, 8, 8, 8]
    assert [down.in_features for down in model.down] == [8, 8, 8, 8]
    assert model(x).shape == reference.shape
    assert report.params_after == report.params_before - 4 * (8 * 8 + 8 + 8 * 8)


def test_token_counts_are_frozen_with_their_reason():
    torch.manual_seed(0)
    model = GatheredMoE().eval()
    analysis = _quiet_analyze(model, torch.randn(2, 6, 8))
    coupled = analysis.coupled
    data_sized = coupled.captured.data_sized
    assert data_sized  # the rows each expert gets
    for name, k, d in data_sized:
        space = coupled.spaces[name][k][d]
        assert any("depends on the input values" in r for r in coupled.rel.frozen[space])
    assert sorted(g.n_units for g in analysis.groups) == [16, 16, 16, 16]  # the expert widths only


def test_a_width_sliced_to_a_data_dependent_length_is_never_pruned():
    torch.manual_seed(0)
    model = DataSizedSlice(hidden=8, width=16).eval()
    x = torch.randn(8, 8)
    analysis = _quiet_analyze(model, x)
    assert {name for name, _, _ in analysis.coupled.captured.data_sized} >= {"slice_1", "slice_2"}
    assert not [g for g in analysis.groups if any(m.fqn.startswith(("fc1", "fc2")) for m in g.members)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = sc.prune(model, (x,), ratio=0.5)
    assert model.fc1.out_features == 16 and model.fc2.in_features == 16
    assert report.params_after == report.params_before


def _prunes_one_whole_expert(model, x):
    (g,) = [g for g in _quiet_analyze(model, x).groups if g.kind == "experts"]
    assert {m.fqn for m in g.members} >= {"router.weight", "up", "down"} and g.n_units == 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = sc.prune(model, (x,), ratio={"experts": 0.25})
    assert report.verification.ok and report.verification.mode == "exact"
    assert model.up.shape[0] == model.down.shape[0] == model.router.out_features == model.num_experts == 3


def test_experts_picked_by_the_ids_a_hit_loop_reads_back_are_whole_units():
    torch.manual_seed(0)
    _prunes_one_whole_expert(HitLoopMoE().eval(), torch.randn(2, 6, 8))


def test_experts_run_by_a_loop_over_constant_positions_are_whole_units():
    torch.manual_seed(0)
    _prunes_one_whole_expert(SplitLoopMoE().eval(), torch.randn(2, 6, 8))
