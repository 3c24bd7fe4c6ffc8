"""Discovered attribute rewrites: recorded in the plan, replayed from JSON and from a saved model, applied inside
the surgery transaction, written back when the unpruned model is rebuilt from a state dict."""

import copy

import pytest
import torch

import secateurs as sc
from secateurs.errors import ApplyError, FileFormatError
from secateurs.plans import Plan
from secateurs.surgery.attributes import write_attributes_
from secateurs.testing.attention import TinyTransformer

X = torch.randn(2, 5, 32)


def _pruned(kind="sdpa"):
    torch.manual_seed(0)
    model = TinyTransformer(kind=kind).eval()
    original = copy.deepcopy(model)
    report = sc.prune(model, X, ratio={"heads": 0.5})
    return original, model, report.plan, report


@pytest.mark.parametrize("kind", ["sdpa", "softmax", "split"])
def test_hand_written_attention_prunes_heads_with_no_handler(kind):
    original, model, plan, report = _pruned(kind)
    assert report.verification.ok and report.verification.mode == "exact"
    attn = model.blocks[0].attn
    assert attn.num_heads == 2 and plan.attributes["blocks.0.attn"]["num_heads"] == 2
    assert plan.attributes_before["blocks.0.attn"]["num_heads"] == 4
    assert attn.qkv.weight.shape[0] == 2 * (16 if kind == "split" else 3 * 8)  # 2 heads of q, k, v
    if kind == "softmax":
        assert attn.scale == original.blocks[0].attn.scale  # the stored scale of the unpruned head width stays
    if kind == "split":
        assert attn.split_sizes == (4, 4, 8) and attn.inner == 16  # a tuple stays a tuple
    with torch.no_grad():
        assert model(X).shape == original(X).shape


def test_replayed_from_json_on_a_fresh_copy():
    original, model, plan, _ = _pruned()
    fresh = copy.deepcopy(original)
    sc.apply(fresh, Plan.from_json(plan.to_json()))
    assert fresh.blocks[1].attn.num_heads == 2
    with torch.no_grad():
        assert torch.equal(fresh(X), model(X))


def test_saved_and_loaded(tmp_path):
    original, model, plan, _ = _pruned()
    sc.save(model, plan, tmp_path / "out")
    loaded = sc.load(tmp_path / "out", model=copy.deepcopy(original))
    assert loaded.blocks[0].attn.num_heads == 2
    with torch.no_grad():
        assert torch.allclose(loaded(X), model(X))


def test_verified_against_a_state_dict_taken_before_pruning():
    original, model, plan, _ = _pruned()
    result = sc.verify(original.state_dict(), model, plan, X)
    assert result.ok and result.mode == "exact"


def test_an_attribute_that_no_longer_holds_its_recorded_value_fails_the_transaction():
    original, _, plan, _ = _pruned()
    fresh = copy.deepcopy(original)
    fresh.blocks[1].attn.num_heads = 5  # not the model the plan was made for
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.raises(ApplyError, match="blocks.1.attn.num_heads = 4"):
        sc.apply(fresh, plan)
    assert fresh.blocks[0].attn.num_heads == 4 and fresh.blocks[1].attn.num_heads == 5
    assert all(torch.equal(v, before[k]) for k, v in fresh.state_dict().items())


def test_restore_writes_the_values_from_before():
    _, model, plan, _ = _pruned()
    write_attributes_(model, plan, restore=True)
    assert model.blocks[0].attn.num_heads == 4


@pytest.mark.parametrize("value", ["4", [1.5], True, {"a": 1}])
def test_plans_with_malformed_attribute_values_are_refused(value):
    _, _, plan, _ = _pruned()
    d = plan.to_dict()
    d["attributes"] = {"blocks.0.attn": {"num_heads": value}}
    with pytest.raises(FileFormatError, match="num_heads"):
        Plan.from_dict(d)


class _DictHeads(torch.nn.Module):
    """Keeps its head count in a dict, which is not tracked: the size is a constant to secateurs."""

    def __init__(self):
        super().__init__()
        self.cfg = {"heads": 4}
        self.inner = TinyTransformer(depth=1).blocks[0].attn

    def forward(self, x):
        B, N, _ = x.shape
        qkv = self.inner.qkv(x).reshape(B, N, 3, self.cfg["heads"], 8).permute(2, 0, 3, 1, 4)
        y = torch.nn.functional.scaled_dot_product_attention(*qkv.unbind(0))
        return self.inner.proj(y.transpose(1, 2).reshape(B, N, -1))


def test_heads_sized_by_a_constant_are_left_out_with_a_note():
    model = _DictHeads().eval()
    report = sc.prune(model, X, ratio={"heads": 0.5})
    assert not any(g.kind == "heads" and g.removed for g in report.plan.groups)
    assert "written as a constant in forward()" in " ".join(report.plan.settings["notes"])


def test_verification_names_the_sizes_nothing_rewrote(monkeypatch):
    monkeypatch.setattr("secateurs.planning.make.prepare_bindings", lambda *a: {})  # no probing: heads planned
    model = _DictHeads().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(sc.SecateursError, match=r"node 'reshape' \(aten.reshape.default\) in module '\(root\)': "
                                                r"4 -> 2 needed, forward\(\) computes it = 4 \[constant\]"):
        sc.prune(model, X, ratio={"heads": 0.5})
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
