"""Tests generated from the coupling-rule registry: every registered op has a fixture that uses it.

For each op: the fixture's captured graph really contains the op (so fixtures stay honest), and
``prune(ratio=0.5)`` either removes half the units through it and verifies (exactly where the op
keeps removed units out of the result), or, for ops that pin a dimension, leaves it whole with the
expected reason while the model still runs.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch.export import Dim

import secateurs as sc
from secateurs.graph.capture import from_exported
from secateurs.graph.couple import couple
from secateurs.graph.groups import find_groups
from secateurs.graph.rules import RULES
from secateurs.graph.structure import build_structure
from secateurs.testing.fixtures import all_fixtures
from secateurs.testing.fixtures._check import rule_names_used
from secateurs.verification.oracle import masked_outputs, run

FIXTURES = all_fixtures()
RULE_NAMES = sorted(RULES.entries())


def test_every_registered_rule_has_a_fixture():
    missing = sorted(set(RULE_NAMES) - set(FIXTURES))
    assert not missing, (
        f"{len(missing)} registered op rules have no fixture in secateurs/testing/fixtures/: {', '.join(missing)}"
    )


def test_every_fixture_names_a_registered_rule():
    stale = sorted(set(FIXTURES) - set(RULE_NAMES))
    assert not stale, f"fixtures for op names no rule is registered under: {', '.join(stale)}"


def _params(op: str) -> list:
    fx = FIXTURES.get(op)
    marks = [pytest.mark.gpu] if fx is not None and fx.device == "cuda" else []
    return pytest.param(op, marks=marks, id=op)


def _probe_class(structure, probe: tuple[str, int]) -> int:
    for cls, members in structure.class_params.items():
        if probe in members:
            return cls
    raise AssertionError(f"probe {probe} is not a parameter dimension of the fixture")


def _group_of(analysis, probe: tuple[str, int]):
    found = [g for g in analysis.groups if any((m.fqn, m.dim) == probe for m in g.members)]
    return found


def _size(model: torch.nn.Module, probe: tuple[str, int]) -> int:
    return int(model.state_dict()[probe[0]].shape[probe[1]])


def _check_dynamic(op: str, fx) -> None:
    model, x = fx.make().eval(), fx.inputs()
    with torch.no_grad():
        ep = torch.export.export(model, (x,), dynamic_shapes=({0: Dim("batch", min=2, max=64)},), strict=False)
    captured = from_exported(ep)
    assert op in rule_names_used(captured), f"fixture for {op} does not produce it"
    structure = build_structure(couple(captured))
    groups = find_groups(structure)
    assert any(any((m.fqn, m.dim) == fx.probe for m in g.members) for g in groups), (
        f"{op} froze {fx.probe}: {structure.class_frozen.get(_probe_class(structure, fx.probe))}"
    )


@pytest.mark.parametrize("op", [_params(op) for op in RULE_NAMES])
def test_rule_fixture(op: str):
    fx = FIXTURES.get(op)
    if fx is None:
        pytest.fail(f"no fixture for registered op {op}")
    if fx.device == "cuda" and not torch.cuda.is_available():
        pytest.skip(f"{op} has only CUDA kernels")
    if fx.dynamic:
        _check_dynamic(op, fx)
        return
    model, x = fx.make().eval(), fx.inputs()
    if fx.device == "cuda":
        model, x = model.cuda(), x.cuda()
    analysis = sc.analyze(model, x)
    used = rule_names_used(analysis.coupled.captured)
    assert op in used, f"fixture for {op} does not produce it; its graph uses {sorted(used)}"
    size = _size(model, fx.probe)
    groups = _group_of(analysis, fx.probe)
    original = copy.deepcopy(model)
    before = run(model, x)

    if fx.expect == "frozen":
        reasons = analysis.structure.class_frozen.get(_probe_class(analysis.structure, fx.probe), [])
        assert not groups, f"{op} should pin {fx.probe} but it is in a prunable group"
        assert any(fx.reason in r for r in reasons), f"expected a reason containing {fx.reason!r}, got {reasons}"
        report = sc.prune(model, x, ratio=0.5)
        assert _size(model, fx.probe) == size
        assert report.verification is not None and report.verification.ok
        after = run(model, x)
        assert [t.shape for t in after] == [t.shape for t in before]
        if report.plan.removed_units() == 0:
            for a, b in zip(after, before, strict=True):
                torch.testing.assert_close(a, b, equal_nan=True)
        return

    assert len(groups) >= 1, f"{op}: {fx.probe} is in no prunable group:\n{analysis.summary()}"
    exact = fx.expect == "exact"
    if exact:  # the groups selection may prune; an overlapping inexact alternative may exist (group norm)
        assert any(g.exact for g in groups), [(g.name, g.inexact_reasons) for g in groups]
    else:  # some units through the op may still be exact (whole groups of a group norm)
        assert any(fx.reason in r for g in groups for r in g.inexact_reasons), [g.inexact_reasons for g in groups]
    report = sc.prune(model, x, ratio=0.5)
    if exact:
        assert all(g.exact for g in report.plan.groups if g.removed)
    v = report.verification
    assert v is not None and v.ok, v
    assert v.mode == ("exact" if exact else "structural")
    assert _size(model, fx.probe) == (fx.kept if fx.kept is not None else size // 2)
    assert report.params_after < report.params_before
    assert report.plan.removed_units() > 0
    # the pruned model equals the masked original on inputs it was not verified on
    torch.manual_seed(1)
    fresh = fx.inputs()
    want = masked_outputs(original, report.plan, fresh)
    got = run(model, fresh)
    assert [t.shape for t in got] == [t.shape for t in want]
    if exact:
        assert v.rel_error is not None and v.rel_error <= 1e-4
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
