"""Tests generated from the surgery-handler registry: every handler type has a sliced-module case.

Each case is applied through the real ``apply`` path (a Plan with ``keep`` and ``hints``), then the
module must run, report attributes equal to its new shapes, and equal the masked original.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

import secateurs as sc
from secateurs.graph.analysis import fingerprint
from secateurs.plans import Plan
from secateurs.surgery.registry import HANDLERS as REGISTRY
from secateurs.surgery.registry import find_handler
from secateurs.testing.handler_fixtures import HANDLER_CASES, TESTED_ELSEWHERE, HandlerCase
from secateurs.verification.oracle import masked

# Built-in handlers; integration handlers (Hugging Face, timm) register lazily and are covered by the
# registry-driven family tests under tests/integrations/.
HANDLERS = {t: fn for t, fn in REGISTRY.entries().items() if fn.__module__.startswith("secateurs.surgery.handlers")}


def test_every_registered_handler_type_has_a_case():
    missing = sorted(t.__qualname__ for t in HANDLERS if t not in HANDLER_CASES and t not in TESTED_ELSEWHERE)
    assert not missing, f"surgery handlers without a case in secateurs/testing/handler_fixtures.py: {', '.join(missing)}"


@pytest.mark.parametrize("module_type", sorted(TESTED_ELSEWHERE, key=lambda t: t.__qualname__))
def test_handlers_tested_elsewhere_name_their_type(module_type):
    path = Path(__file__).resolve().parents[2] / TESTED_ELSEWHERE[module_type]
    text = path.read_text()
    assert module_type.__name__ in text and "def test_" in text


def _plan(model: torch.nn.Module, case: HandlerCase) -> Plan:
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    return Plan(fingerprint(model), shapes, case.keep, {"": dict(case.hints)} if case.hints else {})


def _select(t: torch.Tensor, dim: int, keep: list[int] | None) -> torch.Tensor:
    return t if keep is None else t.index_select(dim, torch.tensor(keep))


@pytest.mark.parametrize("kind", sorted(HANDLER_CASES, key=lambda t: t.__qualname__), ids=lambda t: t.__qualname__)
def test_handler_case(kind: type):
    case = HANDLER_CASES[kind]
    model = case.make().eval()
    assert find_handler(model) is not None, f"no handler found for {type(model).__qualname__}"
    assert kind in type(model).__mro__
    original = copy.deepcopy(model)
    x = case.inputs()
    plan = _plan(model, case)
    sc.apply(model, plan)

    for name, value in case.attrs.items():
        got = getattr(model, name)
        assert (tuple(got) if isinstance(value, tuple) else got) == value, f"{type(model).__name__}.{name} = {got}, want {value}"
    for fqn, dims in case.keep.items():
        shape = model.state_dict()[fqn].shape
        for d, idx in dims.items():
            assert shape[d] == len(idx), f"{fqn} dim {d}: {shape[d]} != {len(idx)}"

    x_small = _select(x, case.channel_dim, case.in_keep)
    with torch.no_grad():
        y = model(x_small)
        if case.rebuild is not None:
            fresh = case.rebuild().eval()
            fresh.load_state_dict(model.state_dict())
            want = fresh(x_small)
        else:
            with masked(original, plan):
                want = _select(original(x), case.channel_dim, case.out_keep)
    assert y.shape == want.shape
    torch.testing.assert_close(y, want, rtol=1e-5, atol=1e-5)
    # the pruned module re-exports, so it can be analysed and pruned again
    sc.analyze(model, x_small)


def test_apply_refreshes_attributes_of_nested_modules():
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 2)).eval()
    x = torch.randn(3, 4)
    report = sc.prune(model, x, ratio=0.5)
    assert report.verification is not None and report.verification.ok
    assert (model[0].out_features, model[2].in_features) == (3, 3)
