"""Tests of bench_quality.py's helpers: ``python -m pytest bench/test_digits_quality.py -q``."""

from __future__ import annotations

import copy
import math

import pytest
import quality_grid
import quality_ours
import quality_recovery as qr
import quality_report as rep
import quality_tp
import torch
from digits_cnn import Workload, cnn, cosine_lr, cosine_sgd, train_base
from torch import nn

import secateurs as sc

needs_tp = pytest.mark.skipif(not quality_tp.available(), reason="torch-pruning not installed")


def test_cosine_lr_starts_at_lr_ends_near_zero_and_decreases() -> None:
    lrs = [cosine_lr(s, 100, 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1)
    assert lrs[-1] < 0.1 * 1e-3
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))
    assert cosine_lr(50, 100, 0.1) == pytest.approx(0.05)
    assert [cosine_lr(s, 100, 0.1, warmup=4) for s in range(4)] == pytest.approx([0.025, 0.05, 0.075, 0.1])


def test_cosine_sgd_sets_the_scheduled_lr_before_every_step() -> None:
    p = nn.Parameter(torch.zeros(3))
    opt = cosine_sgd(total_steps=10, lr=0.2)([p])
    seen = []
    for _ in range(10):
        p.grad = torch.ones(3)
        opt.step()
        seen.append(opt.param_groups[0]["lr"])
    assert seen == pytest.approx([cosine_lr(s, 10, 0.2) for s in range(10)])


def test_parse_target_labels_and_kwargs() -> None:
    t = quality_ours.parse_target("0.3")
    assert (t.label, t.kwargs()) == ("30% ch", {"ratio": 0.3, "scope": "local"})
    t = quality_ours.parse_target("macs=0.5:global")
    assert (t.label, t.kwargs()) == ("MACs 50% global", {"macs": 0.5, "scope": "global"})
    with pytest.raises(ValueError, match="scope"):
        quality_ours.parse_target("0.5:everywhere")


def test_criteria_follow_the_preferred_order_and_filter() -> None:
    names = quality_ours.criteria()
    assert names[:2] == ["l1", "l2"] and "taylor" in names
    assert quality_ours.criteria(["taylor", "l1"]) == ["l1", "taylor"]


def test_mean_std_and_pct() -> None:
    assert rep.mean_std([None]) is None
    assert rep.mean_std([0.5]) == (0.5, 0.0, 1)
    m, sd, n = rep.mean_std([0.98, 0.99, None, 1.0])
    assert (m, n) == (pytest.approx(0.99), 3) and sd == pytest.approx(0.01)
    assert rep.pct((0.9876, 0.0, 1)) == "98.8"
    assert rep.pct((0.9876, 0.003, 3)) == "98.8 ± 0.3"


def _grid(tool: str, crit: str, pruned: list[float], ft: float, **extra: float) -> list[dict]:
    return [{"section": "grid", "tool": tool, "criterion": crit, "target": "50% ch", "seed": s, "pruned": p,
             "ft": ft, "macs": 0.3, "params": 0.3, **extra} for s, p in enumerate(pruned)]


def test_summary_compares_best_means_with_and_without_compensation() -> None:
    rows = (_grid("secateurs", "l2", [0.80, 0.82], 0.97, lstsq=0.95) + _grid("secateurs", "taylor", [0.90, 0.88], 0.98)
            + _grid("torch-pruning", "l2", [0.91, 0.93], 0.975))
    table, verdicts = rep.summary(rows, ["lstsq"])
    v = verdicts[0]
    assert (v["ours_best"], v["beats"], v["ours_best_compensated"]) == ("taylor", False, "l2")
    assert v["diff_points"] == pytest.approx(-3.0) and v["diff_compensated"] == pytest.approx(3.0)
    assert "89.0 ± 1.4 (taylor)" in table and "92.0 ± 1.4 (l2)" in table and "| -3.0 |" in table
    _, verdicts = rep.summary(rows, [])
    assert verdicts[0]["diff_compensated"] is None


def test_grid_table_marks_missing_compensation_and_failures() -> None:
    rows = _grid("secateurs", "l2", [0.8], 0.9) + _grid("torch-pruning", "l2", [0.8], 0.9)
    rows.append({"section": "grid", "tool": "secateurs", "criterion": "bad", "target": "50% ch", "seed": 0,
                 "error": "ValueError: nope"})
    table = rep.grid_table(rows, [])
    lines = table.splitlines()
    assert rep.NA in lines[2] and "—" in lines[3] and "FAILED: ValueError: nope" in lines[4]


def test_recovery_table_reports_points_lost_per_seed_mean() -> None:
    rows = [{"section": "recovery", "ratio": 0.5, "flow": "f", "recipe": "r", "seed": s, "pruned": 0.5,
             "recovered": rec, "base": 0.99} for s, rec in enumerate([0.985, 0.987])]
    line = rep.recovery_table(rows).splitlines()[2]
    assert line == "| 50% | f | r | 50.0 ± 0.0 | 98.6 ± 0.1 | 0.40 ± 0.14 | 2 |"


class _FakePruner:
    def __init__(self) -> None:
        self.calls = 0

    def regularize(self, model: nn.Module) -> None:
        self.calls += 1
        for p in model.parameters():
            p.grad.add_(1.0)


def test_regularized_optimizer_edits_gradients_before_each_step() -> None:
    model, fake = nn.Linear(2, 2, bias=False), _FakePruner()
    opt = quality_tp.regularized(lambda ps: torch.optim.SGD(ps, lr=1.0), fake, model)(model.parameters())
    w0 = model.weight.detach().clone()
    for _ in range(3):
        model.weight.grad = torch.zeros_like(model.weight)
        opt.step()
    assert fake.calls == 3
    assert torch.allclose(model.weight, w0 - 3.0)


@needs_tp
def test_tp_ratio_for_macs_lands_near_the_target() -> None:
    torch.manual_seed(0)
    model, x = cnn().eval(), torch.randn(1, 1, 8, 8)
    full = quality_tp.macs(model, x)
    ratio = quality_tp.ratio_for_macs(model, x, "l2", 0.5, [], steps=8)
    pruned = quality_tp.prune(copy.deepcopy(model), x, "l2", ratio, [])
    assert abs(quality_tp.macs(pruned, x) / full - 0.5) < 0.05
    assert quality_tp.classifier(pruned).out_features == 10


@needs_tp
def test_tp_gets_exactly_our_widths_where_its_rounding_differs() -> None:
    torch.manual_seed(0)
    model, x = cnn().eval(), torch.randn(1, 1, 8, 8)
    ours = copy.deepcopy(model)
    sc.prune(ours, x, ratio=0.3)
    want = quality_grid.widths(ours)
    assert want == {"0": 23, "3": 45, "7": 45}  # floor(0.3 n) removed
    plain = quality_grid.widths(quality_tp.prune(copy.deepcopy(model), x, "l2", 0.3, []))
    assert plain != want  # TP alone keeps int(0.7 n): 22, 44, 44
    assert quality_grid.widths(quality_tp.prune(copy.deepcopy(model), x, "l2", 0.3, [], widths=want)) == want


@pytest.fixture(scope="module")
def tiny() -> tuple[Workload, nn.Module]:
    w = Workload(seed=0, calibration_batches=2)
    return w, train_base(w.data, seed=0, epochs=1)


def test_workload_split_is_fixed_and_calibration_is_training_data(tiny: tuple[Workload, nn.Module]) -> None:
    w, _ = tiny
    other = Workload(seed=1)
    assert torch.equal(w.y_test, other.y_test) and len(w.calibration) == 2
    assert sum(len(b[1]) for b in other.calibration) == len(other.y_train)


def test_grid_cells_of_both_tools_record_every_column(tiny: tuple[Workload, nn.Module]) -> None:
    w, base = tiny
    target, recipe = quality_ours.parse_target("0.5"), qr.Recipe("ft 1", 1)
    rows = quality_grid.run(base, w, ["l2", "taylor"], ["l2"] if quality_tp.available() else [], [target], [],
                            seed=0, recipe=recipe, log=lambda s: None)
    for r in rows:
        assert "error" not in r, r
        assert 0.0 <= r["pruned"] <= 1.0 and 0.0 <= r["ft"] <= 1.0
        assert 0.2 < r["macs"] < 0.5 and 0.2 < r["params"] < 0.5  # half the channels: about a quarter of the MACs
    assert len(rows) == (3 if quality_tp.available() else 2)


@needs_tp
def test_recovery_flows_prune_to_the_same_width_in_both_tools(tiny: tuple[Workload, nn.Module]) -> None:
    w, base = tiny
    s_ours, s_tp = qr.Sparsity("bn_l1", 1e-3, 1), qr.Sparsity("bnscale", 1e-3, 1)
    widths = []
    for flow in (qr.Flow("secateurs", "bn_scale", s_ours), qr.Flow("torch-pruning", "bn_scale", s_tp),
                 qr.Flow("torch-pruning", "l2")):
        start = qr.sparsity_train(base, flow.sparsity, w, 0) if flow.sparsity else base
        m = flow.make(start, 0.7, w, 0)  # TP alone would keep 9, 19, 19
        widths.append([c.out_channels for c in m.modules() if isinstance(c, nn.Conv2d)])
    assert widths == [[10, 20, 20]] * 3
    assert qr.Flow("torch-pruning", "bn_scale", s_tp).label == "TP: bnscale λ=0.001 x1 ep -> bn_scale BNScalePruner"
    assert math.isfinite(w.accuracy(m))


@pytest.mark.skipif(not quality_ours.compensations(), reason="this secateurs has no compensate= option")
def test_pruned_copies_equal_prune_with_compensate(tiny: tuple[Workload, nn.Module]) -> None:
    w, base = tiny
    target = quality_ours.parse_target("0.5")
    plan = quality_ours.plan(base, w.example, sc.analyze(base, w.example), "l2", target, w.calibration, None)
    copies = quality_ours.pruned_copies(base, plan, w.calibration, quality_ours.compensations())
    for mode in ["plain", *quality_ours.compensations()]:
        ref = copy.deepcopy(base)
        quality_ours.prune(ref, w.example, "l2", target, w.calibration, None,
                           compensate=None if mode == "plain" else mode)
        got = copies[mode].state_dict()
        assert ref.state_dict().keys() == got.keys()
        assert all(torch.equal(v, got[k]) for k, v in ref.state_dict().items()), mode
