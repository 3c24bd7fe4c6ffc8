"""sc.shear's annealing phase (training on the final structure, kept units at 1) and the masks' start ranked by a
data-aware importance."""

import pytest
import torch
from shear_cases import TARGET
from shear_cases import batches as _data
from shear_cases import small_llama as _model

import secateurs as sc
from secateurs.errors import InvalidArgumentError
from secateurs.sheared.importance import ranked_log_alpha, unit_scores
from secateurs.sheared.layout import find_layout, structures
from secateurs.sheared.masks import HardConcrete, init_log_alpha

pytest.importorskip("transformers")

FAST = {"steps": 6, "lr": 1e-3, "log_every": 1, "progress": False}


def _silence_(model, ffn: list[int], head: int, layer: int) -> None:
    """Zero what FFN neurons ``ffn`` of layer 0, query head ``head`` of every layer and all of block ``layer`` write."""
    layout = find_layout(model)
    with torch.no_grad():
        layout.mlp_out[0].weight[:, ffn] = 0
        for o_proj in layout.attn_out:
            o_proj.weight[:, head * layout.head_dim:(head + 1) * layout.head_dim] = 0
        layout.attn_out[layer].weight.zero_()
        layout.mlp_out[layer].weight.zero_()


def test_annealing_ends_on_the_exact_structure_with_kept_units_at_full_value(tmp_path):
    model = _model()
    result = sc.shear(model, _data(), TARGET, anneal=0.5, checkpoint_dir=str(tmp_path), checkpoint_every=3, **FAST)
    counts = {"layers": 2, "hidden": 48, "ffn": 64, "kv_heads": 1, "query_heads": 1}
    for name, values in result.final_masks.items():
        v = torch.tensor(values)
        assert set(v.unique().tolist()) <= {0.0, 1.0}  # deterministic: kept units at 1, the rest removed
        per = v.sum(-1) if v.dim() == 2 else v.sum()
        assert (per == counts[name]).all()
    assert result.masked_rel_error is not None and result.masked_rel_error <= 1e-2
    assert [h["lagrangian"] for h in result.history[3:]] == [0.0, 0.0, 0.0]  # steps 4-6: no Lagrangian
    c = model.config
    assert (c.num_hidden_layers, c.hidden_size, c.intermediate_size) == (2, 48, 64)


def test_the_masks_do_not_move_while_annealing_and_the_weights_do(tmp_path):
    from safetensors.torch import load_file

    from secateurs.sheared.run import lm_loss

    calls, before = {"n": 0}, {}

    def loss_fn(output, batch):
        calls["n"] += 1
        if calls["n"] == 4:  # the first annealing step: the checkpoint of step 3 holds the masks as learned
            before.update(load_file(str(tmp_path / "shear.safetensors")))
            before.update({f"model.{k}": v for k, v in load_file(str(tmp_path / "model.safetensors")).items()})
        return lm_loss(output, batch)

    sc.shear(_model(), _data(), TARGET, anneal=0.5, loss_fn=loss_fn, checkpoint_dir=str(tmp_path),
             checkpoint_every=3, **FAST)
    after = load_file(str(tmp_path / "shear.safetensors"))
    weights = load_file(str(tmp_path / "model.safetensors"))
    masks = [k for k in after if k.startswith("masks.")]
    assert masks and all(torch.equal(after[k], before[k]) for k in masks + ["lagrangian.lambda1"])
    assert not torch.equal(weights["model.layers.0.mlp.up_proj.weight"], before["model.model.layers.0.mlp.up_proj.weight"])


def test_without_annealing_kept_units_keep_their_learned_values():
    result = sc.shear(_model(), _data(), TARGET, anneal=0.0, **FAST)
    ffn = torch.tensor(result.final_masks["ffn"])
    kept = ffn[ffn != 0]
    assert kept.numel() == 3 * 64 and (kept < 1).any()  # deterministic values, not all 1


def test_unit_scores_rank_silenced_units_last():
    model = _model()
    _silence_(model, ffn=[3, 7], head=2, layer=1)
    layout = find_layout(model)
    structs = structures(layout, {**TARGET, "num_attention_heads": 1})  # every structure, query heads included
    scores = unit_scores(model, layout, _data(2), structs)
    assert scores["ffn"].shape == (3, 128) and scores["query_heads"].shape == (3, 2)
    assert scores["ffn"][0, [3, 7]].tolist() == [0.0, 0.0] and (scores["ffn"][0, [0, 1, 2]] > 0).all()
    assert int(scores["layers"].argmin()) == 1 and float(scores["layers"][1]) == 0.0
    # query head 2 is position 0 of key/value group 1: that group and that position score lowest in layers 0, 2
    assert scores["kv_heads"][[0, 2]].argmin(-1).tolist() == [1, 1]
    assert scores["query_heads"][[0, 2]].argmin(-1).tolist() == [0, 0]
    assert (scores["hidden"] > 0).all() and scores["hidden"].shape == (64,)


def test_ranked_log_alpha_follows_the_scores_and_keeps_the_mean_start():
    scores = torch.tensor([[0.5, 3.0, 1.0, 2.0], [1.0, 1.0, 0.0, 4.0]])
    la = ranked_log_alpha(scores, keep=0.9, spread=6.0)
    assert la[0].argsort().tolist() == [0, 2, 3, 1]
    assert la[1].argsort().tolist() == [2, 1, 0, 3]  # tie: the lower index ranks higher
    torch.testing.assert_close(la.mean(-1), torch.full((2,), init_log_alpha(0.9)))
    assert float(la[0].max() - la[0].min()) == pytest.approx(6.0)
    m = HardConcrete((2, 4))
    with torch.no_grad():
        m.log_alpha.copy_(la)
    assert m.top_k(1).nonzero().tolist() == [[0, 1], [1, 3]]


def test_init_from_activations_prunes_the_silenced_units_first():
    model = _model()
    _silence_(model, ffn=list(range(0, 128, 2)), head=2, layer=1)
    result = sc.shear(model, _data(), {"intermediate_size": 64, "num_hidden_layers": 2}, init_from="activations",
                      train_weights=False, mask_lr=1e-4, **FAST)  # masks barely move: the start decides
    assert torch.tensor(result.final_masks["ffn"])[0].nonzero().flatten().tolist() == list(range(1, 128, 2))
    assert torch.tensor(result.final_masks["layers"]).tolist()[1] == 0.0


def test_refusals_of_the_new_settings():
    for bad in ({"anneal": 0.6, "warmup": 0.5}, {"anneal": 1.0, "warmup": 0.0}, {"init_from": "l2"},
                {"init_spread": -1.0}, {"init_batches": 0}):
        with pytest.raises(InvalidArgumentError):
            sc.shear(_model(), _data(), TARGET, **{**FAST, **bad})
