"""Head counts the stock config accepts: LlamaConfig's hidden_size % num_attention_heads, asked of the config."""

from __future__ import annotations

import importlib
import warnings

import pytest
import torch

import secateurs as sc
from secateurs.graph.analysis import analyze
from secateurs.selection.constraints import CONSTRAINTS, CountConstraint, constrain

transformers = pytest.importorskip("transformers")
importlib.import_module("secateurs.integrations.hf.handlers")  # registers the Hugging Face provider


def _llama3_like(hidden: int = 256, layers: int = 2, vocab: int = 128, device: str = "cpu") -> torch.nn.Module:
    """Llama-3's head layout (32 query heads in 8 key/value groups) at a small width: hidden % 24 != 0."""
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden,
                                   num_hidden_layers=layers, num_attention_heads=32, num_key_value_heads=8,
                                   head_dim=hidden // 32, max_position_embeddings=64)
    with torch.device(device):
        return transformers.LlamaForCausalLM(cfg).eval()


def _ids(vocab: int = 128) -> dict:
    return {"input_ids": torch.randint(1, vocab, (1, 8), generator=torch.Generator().manual_seed(0)), "use_cache": False}


def test_heads_quarter_on_llama3_layout_saves_and_reloads(tmp_path):
    model = _llama3_like()
    with pytest.warns(UserWarning, match=r"24 query heads / 6 key/value heads are rejected by LlamaConfig.*heads ratio "
                                         r"0.25 -> 0 \(8 of 8 kept\)"):
        report = sc.prune(model, _ids(), ratio={"heads": 0.25, "ffn": 0.3})
    assert report.verification.ok
    change = report.plan.settings["count_constraints"][0]
    assert change["kinds"] == ["heads", "query_heads"] and change["kept_asked"] == [6, 4]
    assert change["kept_used"] == [8, 4] and [4, 4] in change["allowed"] and [6, 4] not in change["allowed"]
    assert len(report.plan.settings["count_constraints"]) == 2  # both layers
    model.save_pretrained(tmp_path)
    again = transformers.LlamaForCausalLM.from_pretrained(tmp_path).eval()
    x = _ids()
    with torch.no_grad():
        assert torch.equal(again(**x).logits, model(**x).logits)


def test_accepted_counts_are_left_alone():
    model = _llama3_like()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plan = sc.plan(model, _ids(), ratio={"heads": 0.5})
    assert "count_constraints" not in plan.settings
    sc.apply(model, plan)
    assert model.config.num_attention_heads == 16 and model.config.num_key_value_heads == 4


def test_valid_heads_false_keeps_the_counts_asked():
    model = _llama3_like()
    plan = sc.plan(model, _ids(), ratio={"heads": 0.25}, valid_heads=False)
    assert "count_constraints" not in plan.settings
    assert sum(len(g.removed) for g in plan.groups if g.kind == "heads") == 2 * 2  # 2 of 8 groups in each layer


def test_query_heads_rounded_jointly():
    """query_heads 0.25 keeps 3 of 4 per group: 24 heads again; the nearest accepted keeps 2 per group (16)."""
    model = _llama3_like()
    with pytest.warns(UserWarning, match="query_heads"):
        plan = sc.plan(model, _ids(), ratio={"query_heads": 0.25})
    change = plan.settings["count_constraints"][0]
    assert change["kept_asked"] == [8, 3] and change["kept_used"] in ([8, 2], [8, 4])
    sc.apply(model, plan)
    assert model.config.hidden_size % model.config.num_attention_heads == 0


def test_exact_8b_shape_on_meta():
    """Llama-3-8B's own widths (1 layer on the meta device): heads=0.25 plans 32 heads, and the config validates."""
    cfg = transformers.LlamaConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=1,
                                   num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=64)
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(cfg).eval()
    with pytest.warns(UserWarning, match=r"hidden size \(4096\) is not a multiple of the number of attention heads \(24\)"):
        plan = sc.plan(model, _ids(), ratio={"heads": 0.25, "ffn": 0.3}, importance="random")
    sc.apply(model, plan)
    model.config.validate()
    assert model.config.num_attention_heads == 32 and model.config.intermediate_size == 14336 - 4300


def test_families_without_the_rule_get_no_constraint():
    from secateurs.testing.hf import tiny

    t = tiny("qwen2")
    analysis = analyze(t.model, t.inputs)
    counts = {g.id: 1 for g in analysis.groups if g.kind == "heads"}
    assert constrain(t.model, analysis.groups, counts) == (counts, [])


@pytest.mark.parametrize("key", list(CONSTRAINTS.entries()), ids=str)
def test_every_provider_answers_constraints(key):
    """Each registered provider returns CountConstraints whose allowed tuples include the unpruned counts."""
    provider = CONSTRAINTS.entries()[key]
    model = _llama3_like()
    analysis = analyze(model, _ids())
    kept = {g.id: g.n_units - 2 if g.kind == "heads" else g.n_units for g in analysis.groups}
    found = provider(model, analysis.groups, kept)
    assert found and all(isinstance(c, CountConstraint) for c in found)
    by_id = {g.id: g for g in analysis.groups}
    for c in found:
        assert tuple(by_id[i].n_units for i in c.groups) in c.allowed
