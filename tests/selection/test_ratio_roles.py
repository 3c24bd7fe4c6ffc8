"""ratio={"ffn": ..., "hidden": ...}: channel groups split by whether they lie on a residual stream."""

import copy

import pytest
import torch

import secateurs as sc
from secateurs.errors import InvalidArgumentError
from secateurs.selection.select import ratio_key
from secateurs.testing.models import TinyResNet
from secateurs.testing.toys import MLP

ROLES = {"ffn": 0.1, "hidden": 0.1, "heads": 0.1}


def _roles(model, x):
    out: dict[str, set[str]] = {}
    for g in sc.analyze(model, x).groups:
        out.setdefault(ratio_key(g, ROLES), set()).update(m.fqn for m in g.members)
    return out


@pytest.mark.parametrize("model_type", ["llama", "gpt2"])
def test_transformer_hidden_is_the_residual_stream_and_ffn_the_mlp(model_type):
    pytest.importorskip("transformers")
    from secateurs.testing.hf import tiny

    t = tiny(model_type)
    roles = _roles(t.model, t.inputs)
    hidden, ffn = roles["hidden"], roles["ffn"]
    # embeddings and every norm are on the residual stream; RoPE's and tanh-GELU's sums are not residual
    assert any("embed" in f or "wte" in f for f in hidden)
    assert any("norm" in f or "ln_" in f for f in hidden)
    assert all("mlp" in f for f in ffn)
    assert not any("k_proj.weight" in f or "c_attn" in f for f in ffn)


def test_ffn_ratio_prunes_only_the_intermediate_size():
    pytest.importorskip("transformers")
    from secateurs.testing.hf import tiny

    t = tiny("llama")
    model = t.model.eval()
    cfg = copy.deepcopy(model.config)
    sc.prune(model, t.inputs, ratio={"ffn": 0.5})
    assert model.config.intermediate_size == cfg.intermediate_size // 2
    assert model.config.hidden_size == cfg.hidden_size
    assert model.config.num_attention_heads == cfg.num_attention_heads


def test_hidden_ratio_prunes_only_the_hidden_size():
    pytest.importorskip("transformers")
    from secateurs.testing.hf import tiny

    t = tiny("llama")
    model = t.model.eval()
    cfg = copy.deepcopy(model.config)
    sc.prune(model, t.inputs, ratio={"hidden": 0.25}, round_to=4)
    assert model.config.hidden_size == cfg.hidden_size * 3 // 4
    assert model.config.intermediate_size == cfg.intermediate_size
    assert model.model.embed_tokens.weight.shape[1] == model.config.hidden_size


def test_resnet_roles_follow_the_skip_connections():
    torch.manual_seed(0)
    model, x = TinyResNet().eval(), torch.randn(1, 3, 16, 16)
    groups = sc.analyze(model, x).groups
    hidden = [g for g in groups if ratio_key(g, ROLES) == "hidden"]
    ffn = [g for g in groups if ratio_key(g, ROLES) == "ffn"]
    assert hidden and ffn
    p = sc.plan(model, x, ratio={"ffn": 0.5})
    removed = {g.id for g in p.groups if g.removed}
    assert removed == {g.id for g in ffn if g.n_units > 1}


def test_plain_mlp_has_no_hidden_groups():
    model, x = MLP().eval(), torch.randn(2, 6)
    assert "hidden" not in _roles(model, x)
    with pytest.warns(sc.errors.NothingPrunedWarning, match="no prunable residual-stream widths"):
        p = sc.plan(model, x, ratio={"hidden": 0.5})
    assert p.removed_units() == 0


def test_unknown_role_is_a_clear_error():
    with pytest.raises(InvalidArgumentError, match="ffn, hidden"):
        sc.plan(MLP(), torch.randn(2, 6), ratio={"mlp": 0.5})
