"""prune_checkpoint: the same tensors as sc.prune in memory, part by part, loadable with from_pretrained."""

from __future__ import annotations

import json

import pytest
import torch

import secateurs as sc
from secateurs.calibration.data import CalibrationData
from secateurs.errors import InvalidArgumentError, PlanError, VerificationError
from secateurs.outofcore import prune as oc
from secateurs.outofcore.skeleton import load_
from secateurs.testing.hf import tiny, token_batches

transformers = pytest.importorskip("transformers")

X = {"input_ids": torch.randint(1, 128, (1, 16), generator=torch.Generator().manual_seed(0)), "use_cache": False}


def _checkpoint(tmp_path, model_type="llama", layers=3, tied=False, dtype=torch.bfloat16):
    t = tiny(model_type, layers=layers)
    if tied:
        t.model.config.tie_word_embeddings = True
        t.model.lm_head.weight = t.model.model.embed_tokens.weight
    t.model.to(dtype)
    src = tmp_path / "src"
    t.model.save_pretrained(src, max_shard_size="60KB")  # several shards, a layer split across two of them
    (src / "tokenizer.json").write_text('{"version": "1.0"}')
    return src


def _in_memory(src, **options):
    model = transformers.AutoModelForCausalLM.from_pretrained(src).eval()
    model.config.use_cache = False
    report = sc.prune(model, X, **options)
    return model, report


def _same(model, dst):
    out = transformers.AutoModelForCausalLM.from_pretrained(dst).state_dict()
    mine = model.state_dict()
    return mine.keys() == out.keys() and all(torch.equal(mine[k], out[k]) for k in mine)


def test_l2_equals_in_memory_bit_for_bit(tmp_path):
    src = _checkpoint(tmp_path)
    options = {"ratio": {"heads": 0.5, "ffn": 0.3}}
    report = sc.prune_checkpoint(src, tmp_path / "dst", X, **options)
    model, mem = _in_memory(src, **options)
    assert _same(model, tmp_path / "dst")
    written = report.plan.settings.pop("files")  # the out-of-core directory's own listing, for overwrite=True
    assert {"plan.json", "config.json", "model.safetensors.index.json", "tokenizer.json"} <= set(written)
    assert report.plan.to_json() == mem.plan.to_json()
    assert [c.mode for c in report.checks] == ["exact"] * 5 and all(c.ok for c in report.checks)  # prefix, 3 layers, head
    dst = tmp_path / "dst"
    assert (dst / "tokenizer.json").read_text() == '{"version": "1.0"}'
    assert json.loads((dst / "config.json").read_text())["intermediate_size"] == model.config.intermediate_size
    assert json.loads((dst / "config.json").read_text()).get("use_cache", True) is True  # off only while pruning
    assert sc.Plan.from_json((dst / "plan.json").read_text()).keep == mem.plan.keep
    assert report.params_after == sum(p.numel() for p in model.parameters())


def test_wanda_equals_in_memory_sequential(tmp_path):
    src = _checkpoint(tmp_path)
    batches = token_batches(3)
    options = {"ratio": {"heads": 0.5, "ffn": 0.3}, "importance": "wanda"}
    report = sc.prune_checkpoint(src, tmp_path / "dst", X, calibration=batches, **options)
    model, mem = _in_memory(src, calibration=CalibrationData(batches, sequential=True), **options)
    assert _same(model, tmp_path / "dst")
    assert report.plan.keep == mem.plan.keep and report.plan.settings["calibration"]["batches"] == 3


def test_default_criterion_reads_the_calibration_and_says_compensation_is_not_run(tmp_path):
    src = _checkpoint(tmp_path)
    report = sc.prune_checkpoint(src, tmp_path / "dst", X, calibration=token_batches(2), ratio={"ffn": 0.3})
    defaults = report.plan.settings["defaults"]
    assert report.plan.config.importance == defaults["importance"] == "wanda"
    assert report.plan.config.compensate is None and "not run out of core" in defaults["reason"]
    plain = sc.prune_checkpoint(src, tmp_path / "l2", X, ratio={"ffn": 0.3})  # no data: l2, as in memory
    assert plain.plan.config.importance == "l2" and plain.plan.keep != report.plan.keep


def test_hidden_size_and_tied_embeddings(tmp_path):
    src = _checkpoint(tmp_path, tied=True, layers=2)
    options = {"ratio": {"heads": 0.5, "hidden": 0.25}, "round_to": 8}
    report = sc.prune_checkpoint(src, tmp_path / "dst", X, **options)
    model, _ = _in_memory(src, **options)
    assert _same(model, tmp_path / "dst") and model.config.hidden_size == 48
    assert {c.mode for c in report.checks} == {"structural"}  # RMSNorm over the pruned hidden size
    index = json.loads((tmp_path / "dst" / "model.safetensors.index.json").read_text())
    assert "lm_head.weight" not in index["weight_map"]  # tied: stored once, as in the source


def test_only_one_part_is_loaded_at_a_time(tmp_path, monkeypatch):
    """The weightless models never hold more than the tensors before and after the blocks plus one block."""
    src = _checkpoint(tmp_path, layers=4)
    ckpt = oc.Checkpoint(src)
    sched = oc.schedule(oc.build_skeleton(ckpt))
    limit = sum(ckpt.tensors[n].nbytes for n in sched.prefix.tensors + sched.suffix.tensors + sched.blocks[0].tensors)
    seen = []

    def loading(model, tensors):
        load_(model, tensors)
        seen.append(sum(p.numel() * p.element_size() for p in {id(p): p for p in model.parameters()}.values()
                        if not p.is_meta))

    monkeypatch.setattr("secateurs.outofcore.parts.load_", loading)
    monkeypatch.setattr(oc, "load_", loading)
    sc.prune_checkpoint(src, tmp_path / "dst", X, ratio={"ffn": 0.3}, importance="wanda", calibration=token_batches(2))
    assert seen and max(seen) <= limit


def test_a_wrong_cut_fails_the_part_check_and_writes_nothing(tmp_path, monkeypatch):
    src = _checkpoint(tmp_path)
    real = oc.sliced

    def wrong(t, dims):
        out = real(t, dims)
        return out * 1.5 if 0 in dims and out.ndim == 2 else out  # the pruned up/gate rows

    monkeypatch.setattr(oc, "sliced", wrong)
    with pytest.raises(VerificationError, match="differs from the masked original"):
        sc.prune_checkpoint(src, tmp_path / "dst", X, ratio={"ffn": 0.5})
    assert not (tmp_path / "dst").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["src"]  # no temporary directory left either


@pytest.mark.parametrize("options,match", [
    ({"drop_layers": 1}, "drop_layers"),
    ({"compensate": "bias"}, "compensate"),
    ({"latency": 0.5}, "latency"),
    ({"importance": "taylor"}, "gradients"),
])
def test_what_is_not_run_out_of_core_is_refused_first(tmp_path, options, match):
    src = _checkpoint(tmp_path, layers=1)
    with pytest.raises(InvalidArgumentError, match=match):
        sc.prune_checkpoint(src, tmp_path / "dst", X, **options)
    assert not (tmp_path / "dst").exists()


def test_a_config_that_would_not_reload_is_refused_before_writing(tmp_path):
    t = tiny("llama", layers=1)
    config = transformers.LlamaConfig(vocab_size=128, hidden_size=256, intermediate_size=128, num_hidden_layers=1,
                                      num_attention_heads=32, num_key_value_heads=8, head_dim=8)
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(config).save_pretrained(tmp_path / "src")
    del t
    with pytest.raises(PlanError, match="would not load with LlamaForCausalLM"):
        sc.prune_checkpoint(tmp_path / "src", tmp_path / "dst", X, ratio={"heads": 0.25}, valid_heads=False)
    assert not (tmp_path / "dst").exists()
    report = sc.prune_checkpoint(tmp_path / "src", tmp_path / "dst", X, ratio={"heads": 0.25})  # rounded: no heads
    assert report.plan.settings["count_constraints"][0]["kept_used"][0] == 8


def test_existing_output_needs_overwrite(tmp_path):
    src = _checkpoint(tmp_path, layers=1)
    sc.prune_checkpoint(src, tmp_path / "dst", X, ratio={"ffn": 0.3})
    with pytest.raises(InvalidArgumentError, match="already exists"):
        sc.prune_checkpoint(src, tmp_path / "dst", X, ratio={"ffn": 0.3})
    sc.prune_checkpoint(src, tmp_path / "dst", X, ratio={"ffn": 0.5}, overwrite=True)  # a directory it wrote
    assert (tmp_path / "dst" / "config.json").is_file()
    assert json.loads((tmp_path / "dst" / "plan.json").read_text())["config"]["target"]["value"]["ffn"] == 0.5
    (tmp_path / "dst" / "notes.txt").write_text("mine")
    with pytest.raises(InvalidArgumentError, match="did not write.*notes.txt"):
        sc.prune_checkpoint(src, tmp_path / "dst", X, ratio={"ffn": 0.3}, overwrite=True)
    assert (tmp_path / "dst" / "notes.txt").read_text() == "mine"
