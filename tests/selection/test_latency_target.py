"""latency= targets: bisection on timed pruned copies. Timers are injected fakes (deterministic functions
of the pruned model), so nothing here asserts wall-clock time; one test runs real timings and checks
only the contract (a plan within ±10% of the request as measured, or TargetUnreachableError)."""

from __future__ import annotations

import pytest
import torch

import secateurs as sc
from secateurs.errors import InvalidArgumentError, InvalidTypeError, TargetUnreachableError
from secateurs.selection.latency import LatencyTarget
from secateurs.testing.toys import ConvBN, DeepMLP, MultiHeadAttention


def params_timer(model, args, kwargs) -> float:
    """A fake latency proportional to the parameter count of the copy being timed."""
    return float(sum(p.numel() for p in model.parameters()))


def overhead_timer(overhead: float):
    def timer(model, args, kwargs) -> float:
        return overhead + params_timer(model, args, kwargs)

    return timer


def kept_params(model, plan) -> float:
    import copy

    pruned = copy.deepcopy(model)
    sc.apply(pruned, plan)
    return sum(p.numel() for p in pruned.parameters()) / sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("scope", ["global", "local"])
def test_latency_target_is_met_within_ten_percent_of_the_fake_timing(scope: str) -> None:
    model, x = ConvBN(width=16).eval(), torch.randn(1, 3, 8, 8)
    plan = sc.plan(model, x, scope=scope, latency=LatencyTarget(0.5, timer=params_timer, repeats=3, threads=1))
    achieved = plan.settings["achieved"]["latency"]
    assert achieved == pytest.approx(0.5, rel=0.10)
    assert achieved == pytest.approx(kept_params(model, plan))  # what was recorded is what the timer saw
    lat = plan.settings["latency"]
    assert lat["threads"] == 1 and lat["repeats"] == 3 and lat["device"] == "cpu" and lat["batch"] == 1
    assert lat["timer"] == "params_timer" and lat["probes"] and lat["tolerance"] == 0.10
    assert plan.settings["targets"] == {"latency": 0.5} and plan.settings["ratios"] is None
    assert 0 < plan.settings["achieved"]["macs"] < 1  # counted too


def test_interleaved_timing_and_batch_setting() -> None:
    seen: list[tuple[int, int]] = []

    def timer(model, args, kwargs) -> float:
        seen.append((args[0].shape[0], sum(p.numel() for p in model.parameters())))
        return params_timer(model, args, kwargs)

    model, x = DeepMLP().eval(), torch.randn(2, 8)
    plan = sc.plan(model, x, latency=LatencyTarget(0.6, timer=timer, repeats=2, warmup=1, batch=5))
    assert {b for b, _ in seen} == {5} and plan.settings["latency"]["batch"] == 5
    full = sum(p.numel() for p in model.parameters())
    first_probe = [n for _, n in seen[:6]]  # warmup ref, warmup pruned, then 2 rounds timing each once
    assert first_probe[0] == full and first_probe[1] < full
    assert sorted(first_probe[2:4]) == sorted(first_probe[4:6]) == [first_probe[1], full]


def test_meta_model_is_timed_with_random_weights() -> None:
    with torch.device("meta"):
        model = ConvBN(width=16).eval()
    x = torch.randn(1, 3, 8, 8, device="meta")
    plan = sc.plan(model, x, importance="random", latency=LatencyTarget(0.5, timer=params_timer, repeats=1))
    assert plan.settings["achieved"]["latency"] == pytest.approx(0.5, rel=0.10)
    assert plan.settings["latency"]["device"] == "cpu"
    assert all(p.is_meta for p in model.parameters())  # the model itself is untouched


def test_prune_report_says_the_achieved_latency() -> None:
    model, x = ConvBN(width=16).eval(), torch.randn(1, 3, 8, 8)
    report = sc.prune(model, x, latency=LatencyTarget(0.5, timer=params_timer, repeats=1))
    assert report.verification is not None and report.verification.ok
    achieved = report.plan.settings["achieved"]["latency"]
    assert f"target latency=0.5: achieved {achieved:.3f}" in report.summary()
    assert report.params_ratio == pytest.approx(report.plan.settings["achieved"]["latency"])


def test_fixed_overhead_makes_the_target_unreachable_and_names_the_nearest_value() -> None:
    model, x = ConvBN(width=16).eval(), torch.randn(1, 3, 8, 8)
    total = sum(p.numel() for p in model.parameters())
    with pytest.raises(TargetUnreachableError, match=r"keeps 0\.\d+ of the measured latency") as info:
        sc.plan(model, x, latency=LatencyTarget(0.3, timer=overhead_timer(total), repeats=1))
    assert "ask for latency >=" in str(info.value)


def test_whole_heads_too_coarse_names_the_measured_neighbours() -> None:
    # 2 heads: the only plans keep all heads or one head; a fake timer counting the attention projections
    model, x = MultiHeadAttention(dim=16, heads=2).eval(), torch.randn(1, 4, 16)

    def heads_timer(model, args, kwargs) -> float:
        return float(model.q.out_features)

    with pytest.raises(TargetUnreachableError, match=r"nearest plans measured keep"):
        sc.plan(model, x, latency=LatencyTarget(0.75, timer=heads_timer, repeats=1, tolerance=0.05))


def test_bad_latency_arguments_are_clear_errors() -> None:
    model, x = DeepMLP().eval(), torch.randn(2, 8)
    with pytest.raises(InvalidArgumentError, match="fraction of measured latency KEPT"):
        sc.plan(model, x, latency=1.5)
    with pytest.raises(InvalidArgumentError, match="pass one target"):
        sc.plan(model, x, latency=0.5, macs=0.5)
    with pytest.raises(InvalidArgumentError, match="pass one target"):
        sc.plan(model, x, latency=0.5, ratio=0.3)
    with pytest.raises(InvalidTypeError):
        sc.plan(model, x, latency="fast")
    with pytest.raises(InvalidArgumentError, match="repeats"):
        LatencyTarget(0.5, repeats=0)


def test_real_timing_keeps_its_contract() -> None:
    """Wall-clock timing on a toy: either a plan whose measured latency is within ±10%, or a clear error."""
    model, x = DeepMLP(d_in=256, hidden=512, d_out=16).eval(), torch.randn(64, 256)
    try:
        plan = sc.plan(model, x, latency=LatencyTarget(0.5, repeats=5, threads=1, max_probes=6))
    except TargetUnreachableError as exc:
        assert "latency=0.5" in str(exc)
        return
    assert abs(plan.settings["achieved"]["latency"] / 0.5 - 1) <= 0.10
    assert plan.settings["latency"]["timer"] == "wall_clock_ms" and plan.settings["latency"]["reference_ms"] > 0


def test_nonlinear_timer_converges_by_interpolation_and_bisection() -> None:
    """A latency far from proportional to the MACs: the MACs starting point misses, the bracket search lands."""
    model, x = ConvBN(width=32).eval(), torch.randn(1, 3, 8, 8)
    total = float(sum(p.numel() for p in model.parameters()))

    def convex_timer(model, args, kwargs) -> float:
        return 0.1 * total + (params_timer(model, args, kwargs) ** 2) / total

    plan = sc.plan(model, x, latency=LatencyTarget(0.4, timer=convex_timer, repeats=1, max_probes=8))
    assert plan.settings["achieved"]["latency"] == pytest.approx(0.4, rel=0.10)
    assert 2 <= len(plan.settings["latency"]["probes"]) <= 8


def test_next_strength_stays_inside_the_bracket() -> None:
    from secateurs.selection.latency import _next_strength

    assert _next_strength(0.0, 1.0, 1.0, 0.0, 0.5, bisect=False) == pytest.approx(0.5)
    assert _next_strength(0.2, 0.9, 0.6, 0.1, 0.3, bisect=False) == pytest.approx(0.5)
    assert _next_strength(0.2, 0.9, 0.6, 0.1, 0.899, bisect=False) == pytest.approx(0.24)  # clamped to 10% in
    assert _next_strength(0.2, 0.9, 0.6, 0.1, 0.3, bisect=True) == pytest.approx(0.4)
    assert _next_strength(0.0, 1.0, 1.0, float("nan"), 0.5, bisect=False) == pytest.approx(0.5)
