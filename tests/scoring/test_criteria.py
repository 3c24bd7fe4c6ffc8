"""Every registered criterion against a toy model where the right answer is known by construction."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import secateurs as sc
from secateurs.calibration import collect
from secateurs.scoring import CRITERIA, get_criterion
from secateurs.scoring.lamp import lamp_scores
from secateurs.scoring.registry import ScoringContext
from secateurs.scoring.taylor import Taylor
from secateurs.testing.toys import MLP, ConvBN, MultiHeadAttention

DEAD = 3  # the unit each case makes least important


def batches(n: int = 3, rows: int = 16, d_in: int = 6) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(rows, d_in, generator=g, dtype=torch.float64) for _ in range(n)]


def mse_to_zero(output: torch.Tensor, batch: object) -> torch.Tensor:
    return output.square().mean()


def unit_scores(model: torch.nn.Module, x: torch.Tensor, name: str, data: list | None = None,
                loss_fn: Callable | None = None, seed: int = 0) -> list[np.ndarray]:
    analysis = sc.analyze(model, x)
    crit = get_criterion(name)
    stats = None
    if crit.needs_data:
        wants = getattr(crit, "moment_paths", None)  # layers whose input Gram matrices the criterion reads
        routers = getattr(crit, "routers", None)  # mixture-of-experts routers whose gates it reads
        stats = collect(model, data, loss_fn=loss_fn, grads=bool(getattr(crit, "needs_grads", False)),
                        moments=wants(model, analysis.groups) if wants else (),
                        routers=routers(analysis.groups) if routers else None)
    ctx = ScoringContext(model, dict(model.state_dict(keep_vars=True)), seed, stats=stats)
    return [np.asarray(crit.scores(g, ctx)) for g in analysis.groups]


def mlp() -> MLP:
    torch.manual_seed(0)
    return MLP().double().eval()


def hidden(model: MLP, data: list[torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([F.relu(model.fc1(b)) for b in data])


def zeroed_mlp() -> MLP:
    m = mlp()
    with torch.no_grad():
        m.fc1.weight[DEAD] = 0
        m.fc1.bias[DEAD] = 0
        m.fc2.weight[:, DEAD] = 0
    return m


def dead_mlp() -> MLP:
    """Unit DEAD never activates (large negative bias before ReLU); its weights are ordinary."""
    m = mlp()
    with torch.no_grad():
        m.fc1.bias[DEAD] = -100.0
    return m


def assert_lowest(scores: np.ndarray, unit: int = DEAD) -> None:
    assert int(np.argmin(scores)) == unit, scores
    assert (np.delete(scores, unit) > scores[unit]).all(), scores


def case_magnitude(p: float) -> Callable[[], None]:
    def run() -> None:
        m = zeroed_mlp()
        (s,) = unit_scores(m, batches()[0], "l1" if p == 1 else "l2")
        assert_lowest(s)
        j = 5
        parts = torch.cat([m.fc1.weight[j], m.fc1.bias[j : j + 1], m.fc2.weight[:, j]]).detach()
        assert s[j] == pytest.approx(float(parts.abs().pow(p).sum() ** (1 / p)))

    return run


def case_random() -> None:
    m = mlp()
    a = unit_scores(m, batches()[0], "random", seed=1)[0]
    b = unit_scores(m, batches()[0], "random", seed=1)[0]
    c = unit_scores(m, batches()[0], "random", seed=2)[0]
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def case_bn_scale() -> None:
    m = ConvBN().eval()
    with torch.no_grad():
        m.bn1.weight.copy_(torch.linspace(0.5, 1.5, 8))
        m.bn1.weight[DEAD] = -0.01  # |gamma| is what matters
    scores = unit_scores(m, torch.randn(1, 3, 8, 8), "bn_scale")
    first = scores[0]
    np.testing.assert_allclose(first, m.bn1.weight.detach().abs().numpy(), rtol=1e-6)
    assert_lowest(first)


def case_fpgm() -> None:
    """Centrally symmetric units around a zero unit: the zero unit is the geometric median."""
    m = MLP(hidden=7).double().eval()
    g = torch.Generator().manual_seed(3)
    rows, cols = torch.randn(3, 6, generator=g, dtype=torch.float64), torch.randn(3, 3, generator=g, dtype=torch.float64)
    with torch.no_grad():
        m.fc1.weight.copy_(torch.cat([rows, -rows, torch.zeros(1, 6, dtype=torch.float64)]))
        m.fc2.weight.copy_(torch.cat([cols, -cols, torch.zeros(1, 3, dtype=torch.float64)]).T)
    (s,) = unit_scores(m, batches()[0], "fpgm")
    assert_lowest(s, 6)
    # unit 0's score is its summed distance to every unit of both weight members
    expected = sum(float(torch.cdist(w, w)[0].sum()) for w in (m.fc1.weight.detach(), m.fc2.weight.detach().T))
    assert s[0] == pytest.approx(expected)


def case_lamp() -> None:
    np.testing.assert_allclose(lamp_scores(np.array([2.0, 1.0, 3.0])), [2 / 5, 1 / 6, 1.0])
    m = zeroed_mlp()
    (s,) = unit_scores(m, batches()[0], "lamp")
    assert_lowest(s)
    assert s.max() == pytest.approx(1.0)


def case_taylor() -> None:
    """Taylor(reduce="unit"): |sum g.w| over the unit equals the directional derivative of the loss along
    removing the unit; the default sums |g.w| per element, which is never smaller."""
    m, data = mlp(), batches(1)
    (s,) = unit_scores(m, data[0], Taylor(reduce="unit"), data, mse_to_zero)  # type: ignore[arg-type]
    (default,) = unit_scores(m, data[0], "taylor", data, mse_to_zero)
    assert np.all(default >= s - 1e-12)
    eps = 1e-6
    for unit in (0, 5):
        params = [(m.fc1.weight, (unit,)), (m.fc1.bias, (unit,)), (m.fc2.weight, (slice(None), unit))]

        def loss(scale: float, params: list = params) -> float:
            saved = [p.detach().clone() for p, _ in params]
            with torch.no_grad():
                for p, idx in params:
                    p[idx] *= scale
                value = float(mse_to_zero(m(data[0]), None))
                for (p, _), old in zip(params, saved, strict=True):
                    p.copy_(old)
            return value

        fd = (loss(1.0) - loss(1.0 - eps)) / eps  # d/dt L(w - t * w_unit) at t=0, negated
        assert s[unit] == pytest.approx(abs(fd), rel=1e-4)


def case_hessian() -> None:
    m, data = mlp(), batches(2)
    (s,) = unit_scores(m, data[0], "hessian", data, mse_to_zero)
    params = [m.fc1.weight, m.fc1.bias, m.fc2.weight]
    fisher = [torch.zeros_like(p) for p in params]
    for b in data:
        for f, g in zip(fisher, torch.autograd.grad(mse_to_zero(m(b), None), params), strict=True):
            f += g.square() / len(data)
    u = 4
    expected = 0.5 * (fisher[0][u] @ m.fc1.weight[u].square() + fisher[1][u] * m.fc1.bias[u] ** 2
                      + fisher[2][:, u] @ m.fc2.weight[:, u].square())
    assert s[u] == pytest.approx(float(expected.detach()), rel=1e-9)
    (z,) = unit_scores(zeroed_mlp(), data[0], "hessian", data, mse_to_zero)
    assert_lowest(z)


def case_activation() -> None:
    m, data = dead_mlp(), batches()
    (s,) = unit_scores(m, data[0], "activation", data)
    np.testing.assert_allclose(s, hidden(m, data).abs().mean(0).numpy(), rtol=1e-9)
    assert_lowest(s)


def case_apoz() -> None:
    m, data = dead_mlp(), batches()
    (s,) = unit_scores(m, data[0], "apoz", data)
    np.testing.assert_allclose(s, 1 - (hidden(m, data) == 0).double().mean(0).numpy(), rtol=1e-9)
    assert s[DEAD] == 0 and assert_lowest(s) is None


def case_wanda() -> None:
    m, data = dead_mlp(), batches()
    (s,) = unit_scores(m, data[0], "wanda", data)
    expected = m.fc2.weight.detach().abs().sum(0) * hidden(m, data).norm(dim=0)
    np.testing.assert_allclose(s, expected.numpy(), rtol=1e-9)
    assert_lowest(s)


def case_fluctuation() -> None:
    """A unit that is always on but constant carries no information: zero variance, lowest score."""
    m, data = mlp(), batches()
    with torch.no_grad():
        m.fc1.weight[DEAD] = 0
        m.fc1.bias[DEAD] = 1.0
    (s,) = unit_scores(m, data[0], "fluctuation", data)
    h = hidden(m, data)
    expected = h.var(0, unbiased=False) * m.fc2.weight.detach().square().sum(0)
    np.testing.assert_allclose(s, expected.numpy(), rtol=1e-6, atol=1e-12)
    assert_lowest(s)
    assert unit_scores(m, data[0], "activation", data)[0][DEAD] > 0.5  # activation alone would keep it


def case_reconstruction() -> None:
    """Score = growth of fc2's output error when the unit goes and fc2 is refit by least squares (with bias);
    a constant unit costs nothing (its mean moves into the bias). More cases: test_reconstruction_criterion.py."""
    m, data = mlp(), batches()
    with torch.no_grad():
        m.fc1.weight[DEAD] = 0
        m.fc1.bias[DEAD] = 1.0
    (s,) = unit_scores(m, data[0], "reconstruction", data)
    h = hidden(m, data).numpy()
    y = h @ m.fc2.weight.detach().numpy().T
    for u in (0, 5):
        x = np.column_stack([np.delete(h, u, axis=1), np.ones(len(h))])
        residual = y - x @ np.linalg.lstsq(x, y, rcond=None)[0]
        assert s[u] == pytest.approx(float((residual**2).sum(1).mean()), rel=1e-4)
    assert_lowest(s)
    assert s[DEAD] < 1e-5 * s.max()  # the ridge (1e-6 of the mean variance) is all that is left


def case_routing() -> None:
    """Experts ranked by the softmax mass their router routes to them (top-2 of 4); expert DEAD is never chosen."""
    from secateurs.testing.moe import TinyMoE

    torch.manual_seed(0)
    m = TinyMoE().double().eval()
    data = [torch.randn(16, 8, generator=torch.Generator().manual_seed(i), dtype=torch.float64) for i in range(3)]
    with torch.no_grad():
        m.router[DEAD] = 0.0
        m.router[DEAD, 0] = -100.0  # a logit of at most -100: feature 0 of every token is at least 1
    data = [torch.cat([b[:, :1].abs() + 1, b[:, 1:]], dim=1) for b in data]
    groups = sc.analyze(m, data[0]).groups
    experts = next(i for i, g in enumerate(groups) if g.kind == "experts")
    s = unit_scores(m, data[0], "routing", data)[experts]
    probs = torch.softmax(F.linear(torch.cat(data), m.router.detach()), dim=-1)
    top = probs.topk(2, dim=-1).indices
    mass = (probs * torch.zeros_like(probs).scatter_(-1, top, 1.0)).mean(0)
    np.testing.assert_allclose(s, mass.numpy(), rtol=1e-9)
    assert_lowest(s)


CASES: dict[str, Callable[[], None]] = {
    "l1": case_magnitude(1.0), "l2": case_magnitude(2.0), "random": case_random, "bn_scale": case_bn_scale,
    "fpgm": case_fpgm, "lamp": case_lamp, "taylor": case_taylor, "hessian": case_hessian,
    "activation": case_activation, "apoz": case_apoz, "wanda": case_wanda, "fluctuation": case_fluctuation,
    "reconstruction": case_reconstruction, "routing": case_routing,
}


@pytest.mark.parametrize("name", CRITERIA.names())
def test_criterion_known_answer(name: str) -> None:
    if name not in CASES:
        pytest.fail(f"criterion {name!r} is registered but has no known-answer case in {__file__}")
    CASES[name]()


@pytest.mark.parametrize("name", CRITERIA.names())
@pytest.mark.parametrize("factory,shape", [(ConvBN, (2, 3, 8, 8)), (MultiHeadAttention, (2, 5, 16))])
def test_every_criterion_plans_and_prunes(name: str, factory, shape) -> None:
    model = factory().eval()
    x = torch.randn(*shape)
    crit = get_criterion(name)
    data = [torch.randn(*shape) for _ in range(2)] if crit.needs_data else None
    loss = (lambda out, batch: out.logsumexp(-1).mean()) if getattr(crit, "needs_grads", False) else None
    report = sc.prune(model, x, ratio=0.5, importance=name, calibration=data, loss_fn=loss, scope="global")
    assert report.verification is not None and report.verification.ok
    assert report.plan.settings["importance"] == name and report.plan.removed_units() > 0
    assert not report.plan.settings["notes"] or name in ("bn_scale", "routing")  # the others read these groups


def test_bn_scale_without_batchnorm_falls_back_with_a_note() -> None:
    p = sc.plan(mlp().float(), torch.randn(2, 6), ratio=0.5, importance="bn_scale")
    assert any("no BatchNorm" in n for n in p.settings["notes"])
    assert p.removed_units() == 4
