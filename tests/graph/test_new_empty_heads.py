"""Keys assembled in a new_empty tensor (multi-head latent attention): heads stay units and prune exactly."""

from __future__ import annotations

import torch

import secateurs as sc
from secateurs.testing.toys import LatentKeyAttention


def test_heads_of_keys_built_in_new_empty():
    torch.manual_seed(0)
    model, x = LatentKeyAttention().eval(), torch.randn(2, 5, 16)
    heads = [g for g in sc.analyze(model, x).groups if g.kind == "heads"]
    assert len(heads) == 1 and heads[0].n_units == 4
    assert {m.fqn for m in heads[0].members} >= {"q.weight", "kv.weight", "o.weight"}
    report = sc.prune(model, x, ratio={"heads": 0.5})
    assert report.verification.ok and report.verification.mode == "exact"
    assert model.q.out_features == 16 and model.o.in_features == 8


def test_new_empty_of_another_rank_stays_frozen():
    from secateurs.testing.fixtures import all_fixtures

    assert all_fixtures()["aten.new_empty"].expect == "frozen"  # h.new_empty(16).fill_(1): a constant
