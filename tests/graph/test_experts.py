"""Whole mixture-of-experts experts as units: found from the router's top-k values, top-k kept, exact removal."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F

import secateurs as sc
from secateurs.testing.moe import DenseScoredMoE, MaxPickMoE, SharedGateMoE, TinyMoE, ZeroExpertMoE
from secateurs.verification.experts import routed_out


def _moe():
    torch.manual_seed(0)
    return TinyMoE().eval(), torch.randn(2, 5, 8)


def test_experts_group_joins_router_rows_and_expert_slices():
    model, x = _moe()
    (g,) = [g for g in sc.analyze(model, x).groups if g.kind == "experts"]
    assert {(m.fqn, m.dim) for m in g.members} == {("router", 0), ("up", 0), ("down", 0)}
    assert g.n_units == 4 and g.min_units == 2 and g.meta == {"router": "router", "top_k": 2}


def test_removing_experts_equals_routing_around_them():
    model, x = _moe()
    original = copy.deepcopy(model)
    report = sc.prune(model, x, ratio={"experts": 0.5})
    assert report.verification.ok and report.verification.mode == "exact"
    assert model.router.shape == (2, 8) and model.up.shape == (2, 12, 8) and model.down.shape == (2, 8, 12)
    removed = report.plan.groups[[g.kind for g in report.plan.groups].index("experts")].removed
    kept = sorted(set(range(4)) - set(removed))
    with torch.no_grad():  # the original whose router never picks the removed experts (-inf logits)
        logits = F.linear(x, original.router)
        logits[..., removed] = float("-inf")
        probs = torch.softmax(logits, dim=-1)
        w, i = probs.topk(2, dim=-1)
        gates = (F.one_hot(i, 4).to(x.dtype) * w.unsqueeze(-1)).sum(-2)[..., kept]
        inner = torch.relu(torch.einsum("...h,eih->...ei", x, original.up[kept]))
        want = x + torch.einsum("...e,...eh->...h", gates, torch.einsum("...ei,ehi->...eh", inner, original.down[kept]))
        torch.testing.assert_close(model(x), want, rtol=1e-5, atol=1e-6)


def test_top_k_experts_are_always_kept():
    model, x = _moe()
    p = sc.plan(model, x, ratio={"experts": 0.9})
    (g,) = [g for g in p.groups if g.kind == "experts"]
    assert len(g.removed) == 2  # 4 experts, top-2 routing: two stay


def test_routed_out_masks_router_logits_to_minus_inf():
    model, x = _moe()
    p = sc.plan(model, x, ratio={"experts": 0.5})
    (g,) = [g for g in p.groups if g.kind == "experts"]
    with routed_out(model, p), torch.no_grad():
        logits = F.linear(x, model.router)
    assert torch.isinf(logits[..., g.removed]).all() and torch.isfinite(logits[..., [u for u in range(4) if u not in
                                                                                      g.removed]]).all()
    assert torch.isfinite(F.linear(x, model.router)).all()  # only within the block


def test_routing_criterion_removes_the_least_routed_experts():
    model, x = _moe()
    data = [torch.randn(16, 8, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    data = [torch.cat([b[:, :1].abs() + 1, b[:, 1:]], dim=1) for b in data]  # feature 0 is at least 1
    with torch.no_grad():
        model.router[1, 0] -= 100.0  # expert 1 is never in these tokens' top-2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = sc.plan(model, x, ratio={"experts": 0.25}, importance="routing", calibration=data)
    assert [g.removed for g in p.groups if g.kind == "experts"] == [[1]]


@pytest.mark.parametrize("model_type", ["mixtral", pytest.param("qwen3_moe", marks=pytest.mark.slow),
                                        pytest.param("deepseek_v3", marks=pytest.mark.slow)])
def test_hf_moe_expert_width_and_whole_experts_reload(model_type, tmp_path):
    pytest.importorskip("transformers")
    from secateurs.testing.hf_tiny import build
    from secateurs.testing.hf_zoo import max_relative_error

    for ratio in ({"ffn": 0.3}, {"experts": 0.25}):
        t = build(model_type)
        with warnings.catch_warnings():
            warnings.simplefilter("error", sc.errors.StockConfigWarning)
            report = sc.prune(t.model, t.inputs, ratio=ratio)
        assert report.verification.ok and report.verification.mode == "exact"
        kinds = {g.kind for g in report.plan.groups if g.removed}
        assert kinds == ({"channels"} if "ffn" in ratio else {"experts"})
        t.model.save_pretrained(tmp_path / model_type)
        fresh = type(t.model).from_pretrained(tmp_path / model_type).eval()
        with torch.no_grad():
            assert max_relative_error(t.model(**t.inputs), fresh(**t.inputs)) <= 1e-5


def _routers_found(model, x):
    return [g for g in sc.analyze(model, x).groups if g.kind == "experts"]


@pytest.mark.parametrize("make, experts_left", [
    (lambda: DenseScoredMoE(), 3),  # scores scattered into a dense matrix, experts run on repeated tokens
    (lambda: MaxPickMoE(), 3),  # picks by max, then max again after masking the first
    (lambda: SharedGateMoE(), 3),  # the router's last row gates a shared expert: logits[..., :-1]
    (lambda: ZeroExpertMoE(), 3),  # zero experts past the routed ones, counted by an attribute
])
def test_routers_that_do_not_index_experts_with_top_k_ids_prune_whole_experts(make, experts_left):
    torch.manual_seed(0)
    model, x = make().eval(), torch.randn(24, 8)
    (g,) = _routers_found(model, x)
    assert g.n_units == 4
    report = sc.prune(model, x, ratio={"experts": 0.25})
    assert report.verification.ok and report.verification.mode == "exact"
    up = model.moe.up if isinstance(model, SharedGateMoE) else model.up
    assert up.shape[0] == experts_left


def test_router_rows_past_the_experts_stay():
    torch.manual_seed(0)
    model, x = SharedGateMoE().eval(), torch.randn(24, 8)
    sc.prune(model, x, ratio={"experts": 0.5})
    assert model.moe.router.shape == (3, 8)  # two experts left and the shared expert's gate row
    torch.manual_seed(0)
    zeros, x = ZeroExpertMoE().eval(), torch.randn(24, 8)
    sc.prune(zeros, x, ratio={"experts": 0.5})
    assert zeros.router.shape == (4, 8) and zeros.num_routed == 2  # two experts and the two zero experts


def test_max_picks_count_as_top_k():
    torch.manual_seed(0)
    model, x = MaxPickMoE().eval(), torch.randn(24, 8)
    (g,) = _routers_found(model, x)
    assert g.min_units == 2 and g.meta["top_k"] == 2
    p = sc.plan(model, x, ratio={"experts": 0.9})
    assert len(p.groups[[r.kind for r in p.groups].index("experts")].removed) == 2


class _BiasedRouter(TinyMoE):
    """A per-expert bias parameter added to the logits (sorted before the router's name)."""

    def __init__(self):
        super().__init__()
        self.a_bias = torch.nn.Parameter(torch.zeros(4))

    def forward(self, x):
        probs = torch.softmax(F.linear(x, self.router) + self.a_bias, dim=-1)
        weights, index = torch.topk(probs, self.top_k, dim=-1)
        gates = (F.one_hot(index, probs.shape[-1]).to(x.dtype) * weights.unsqueeze(-1)).sum(-2)
        inner = torch.relu(torch.einsum("...h,eih->...ei", x, self.up))
        return x + torch.einsum("...e,...eh->...h", gates, torch.einsum("...ei,ehi->...eh", inner, self.down))


def test_the_router_is_the_weight_not_a_per_expert_bias():
    torch.manual_seed(0)
    model, x = _BiasedRouter().eval(), torch.randn(24, 8)
    (g,) = _routers_found(model, x)
    assert g.meta["router"] == "router" and g.members[0].fqn == "router"
    report = sc.prune(model, x, ratio={"experts": 0.25})
    assert report.verification.ok and model.a_bias.shape == (3,)
