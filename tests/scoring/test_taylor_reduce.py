"""Taylor(reduce="element"): sum of |g*w| per unit, never below the whole-unit |sum g*w|."""

import numpy as np
import pytest
import torch

import secateurs as sc
from secateurs.calibration import collect
from secateurs.errors import InvalidArgumentError
from secateurs.scoring.registry import ScoringContext
from secateurs.scoring.taylor import Taylor
from secateurs.testing.toys import MLP


def _scores(reduce: str) -> tuple[np.ndarray, MLP, torch.Tensor]:
    torch.manual_seed(0)
    m = MLP().double().eval()
    x = torch.randn(16, 6, dtype=torch.float64)
    analysis = sc.analyze(m, x)
    stats = collect(m, [x], loss_fn=lambda out, b: out.square().mean(), grads=True)
    ctx = ScoringContext(m, dict(m.state_dict(keep_vars=True)), 0, stats=stats)
    (g,) = analysis.groups
    return np.asarray(Taylor(reduce=reduce).scores(g, ctx)), m, x


def test_element_reduction_is_the_sum_of_absolute_terms():
    unit, m, x = _scores("unit")
    element, _, _ = _scores("element")
    m.zero_grad()
    m(x).square().mean().backward()
    terms = [(m.fc1.weight.grad * m.fc1.weight).abs().sum(1), (m.fc1.bias.grad * m.fc1.bias).abs(),
             (m.fc2.weight.grad * m.fc2.weight).abs().sum(0)]
    expected = sum(t.detach() for t in terms).numpy()
    np.testing.assert_allclose(element, expected, rtol=1e-9)
    assert np.all(element >= unit - 1e-12)
    assert np.any(element > unit + 1e-9)  # mixed signs inside a unit cancel only in the unit reduction


def test_bad_reduce_is_a_clear_error():
    with pytest.raises(InvalidArgumentError, match="'unit' or 'element'"):
        Taylor(reduce="max")
