"""Frugal surgery: replaced tensors are emptied as they are cut, and a rollback refills the same objects."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import secateurs as sc
from secateurs.errors import ApplyError, VerificationError
from secateurs.surgery.apply import apply_plan
from secateurs.surgery.journal import Journal, sliced
from secateurs.surgery.registry import HANDLERS
from secateurs.surgery.spill import SliceStore
from secateurs.testing.hf import tiny
from secateurs.verification import oracle


def _state(model: nn.Module) -> dict[str, tuple[nn.Parameter, torch.Tensor]]:
    return {k: (p, p.detach().clone()) for k, p in model.named_parameters(remove_duplicate=False)}


@pytest.mark.parametrize("spill_bytes", [0, 2**40])
def test_journal_cuts_like_sliced_and_restores_bit_for_bit(spill_bytes):
    t = torch.randn(6, 5, dtype=torch.bfloat16)
    before = t.clone()
    dims = {1: [0, 2, 4], 0: [1, 2, 5]}
    journal = Journal(spill_bytes=spill_bytes)
    journal.begin(t.numel() * t.element_size())
    out = journal.slice(t, dims)
    assert torch.equal(out, before[[1, 2, 5]][:, [0, 2, 4]])
    assert t.numel() == (0 if spill_bytes == 0 else 30)  # spilled: emptied at once
    out.mul_(2)  # whatever happens to the new tensor, the old one comes back as it was
    journal.restore()
    assert torch.equal(t, before) and t.shape == (6, 5)


def test_views_are_cut_but_not_emptied():
    base = torch.randn(4, 6)
    view = base[:, :3]
    journal = Journal(spill_bytes=0)
    journal.begin(10**9)
    out = journal.slice(view, {0: [0, 3]})
    assert torch.equal(out, view[[0, 3]]) and view.numel() == 12


def test_applied_plan_empties_the_replaced_parameters(monkeypatch):
    monkeypatch.setattr("secateurs.surgery.journal.SPILL_BYTES", 0)
    t = tiny("llama")
    before = _state(t.model)
    plan = sc.plan(t.model, t.inputs, ratio={"heads": 0.5, "hidden": 0.25})
    apply_plan(t.model, plan, journal=Journal(spill_bytes=0))
    q = "model.layers.0.self_attn.q_proj.weight"  # cut on two dims: heads (0) and hidden (1)
    assert before[q][0].numel() == 0 and t.model.get_parameter(q) is not before[q][0]
    assert torch.equal(t.model.get_parameter(q), sliced(before[q][1], plan.keep[q]))


@pytest.mark.parametrize("spill_bytes", [0, 2**40])
def test_failed_handler_refills_the_same_parameter_objects(monkeypatch, spill_bytes):
    monkeypatch.setattr("secateurs.surgery.journal.SPILL_BYTES", spill_bytes)
    t = tiny("llama")
    before = _state(t.model)
    plan = sc.plan(t.model, t.inputs, ratio={"heads": 0.5, "hidden": 0.25, "ffn": 0.3})
    cls = type(t.model.model.layers[1].mlp)

    def broken(m, hints):
        m.down_proj.weight.data.mul_(3)  # a buggy handler writing into the new weights, then failing
        raise RuntimeError("boom")

    with HANDLERS.replaced(cls, broken), pytest.raises(ApplyError, match="restored"):
        apply_plan(t.model, plan)
    now = dict(t.model.named_parameters(remove_duplicate=False))
    for name, (obj, values) in before.items():
        assert now[name] is obj and torch.equal(obj, values)


@pytest.mark.parametrize("spill_bytes", [0, 2**40])
def test_failed_verification_refills_the_same_parameter_objects(monkeypatch, spill_bytes):
    monkeypatch.setattr("secateurs.surgery.journal.SPILL_BYTES", spill_bytes)
    t = tiny("llama")
    before = _state(t.model)
    real = oracle.compare

    def wrong(reference, *args, **kwargs):  # the masked original's outputs moved: verification must fail
        for run in reference.runs:
            run.outputs = {k: v + 1 if v.is_floating_point() else v for k, v in run.outputs.items()}
        return real(reference, *args, **kwargs)

    monkeypatch.setattr("secateurs.api.compare", wrong)
    monkeypatch.setattr("secateurs.verification.oracle.compare", wrong)  # the float64 recheck's too
    with pytest.raises(VerificationError, match="restored"):
        sc.prune(t.model, t.inputs, ratio={"heads": 0.5, "ffn": 0.3})
    now = dict(t.model.named_parameters(remove_duplicate=False))
    for name, (obj, values) in before.items():
        assert now[name] is obj and torch.equal(obj, values)


@pytest.mark.parametrize("spill", [True, False])
def test_slice_store_round_trip(spill):
    with SliceStore(spill) as store:
        values = [torch.randn(3, 4).to(torch.bfloat16), torch.arange(5), torch.zeros(0, 3)]
        handles = [store.put(v) for v in values]
        for v, h in zip(values, handles, strict=True):
            got = store.get(h)
            assert got.dtype == v.dtype and torch.equal(got, v)


def test_masked_reference_is_the_same_with_the_slices_in_a_file():
    t = tiny("llama")
    plan = sc.plan(t.model, t.inputs, ratio={"heads": 0.5, "ffn": 0.3})
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    with oracle.masked(t.model, plan, spill_bytes=0):
        spilled = oracle.run(t.model, t.inputs)
    with oracle.masked(t.model, plan, spill_bytes=2**40):
        kept = oracle.run(t.model, t.inputs)
    assert all(torch.equal(a, b) for a, b in zip(spilled, kept, strict=True))
    assert all(torch.equal(v, t.model.state_dict()[k]) for k, v in before.items())
