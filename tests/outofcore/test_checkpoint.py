"""Reading checkpoints lazily, and the weightless model built from them."""

from __future__ import annotations

import pytest
import torch

from secateurs.errors import FileFormatError, InvalidArgumentError
from secateurs.graph.analysis import fingerprint
from secateurs.outofcore.checkpoint import Checkpoint
from secateurs.outofcore.parts import LazyTensors, schedule
from secateurs.outofcore.skeleton import build_skeleton, load_, release_
from secateurs.testing.hf import tiny

transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")


@pytest.fixture
def src(tmp_path):
    t = tiny("llama", layers=2)
    t.model.to(torch.bfloat16)
    t.model.save_pretrained(tmp_path / "src", max_shard_size="60KB")
    return tmp_path / "src"


def test_reads_every_tensor_as_safetensors_does(src):
    ckpt = Checkpoint(src)
    want = {}
    for f in sorted(src.glob("*.safetensors")):
        want.update(safetensors_torch.load_file(f))
    got = ckpt.read(list(want))
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) and got[k].dtype == want[k].dtype for k in want)
    assert ckpt.total_bytes == sum(t.numel() * t.element_size() for t in want.values())


def test_mixed_dtypes_and_a_single_file(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    tensors = {"a": torch.randn(3, 4), "b": torch.arange(6).reshape(2, 3), "c": torch.randn(5).to(torch.float16),
               "empty": torch.zeros(0, 4)}
    safetensors_torch.save_file(tensors, str(tmp_path / "model.safetensors"))
    got = Checkpoint(tmp_path).read(tensors)
    assert all(torch.equal(got[k], v) and got[k].dtype == v.dtype for k, v in tensors.items())


def test_truncated_shard_is_refused(src):
    shard = sorted(src.glob("*.safetensors"))[0]
    data = shard.read_bytes()
    shard.write_bytes(data[:-10])
    ckpt = Checkpoint(src)
    name = max((n for n, i in ckpt.tensors.items() if i.file == shard.name), key=lambda n: ckpt.tensors[n].end)
    with pytest.raises(FileFormatError, match="truncated"):
        ckpt.read([name])


def test_pickles_are_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x02")
    with pytest.raises(InvalidArgumentError, match="pickles"):
        Checkpoint(tmp_path)
    with pytest.raises(InvalidArgumentError, match="no config.json"):
        Checkpoint(tmp_path / "nowhere")


def test_skeleton_matches_from_pretrained_without_weights(src):
    ckpt = Checkpoint(src)
    skeleton = build_skeleton(ckpt)
    loaded = transformers.AutoModelForCausalLM.from_pretrained(src)
    assert fingerprint(skeleton) == fingerprint(loaded)  # names, shapes and dtypes: the same plans
    assert all(p.is_meta for p in skeleton.parameters())
    inv = skeleton.model.rotary_emb.inv_freq
    assert not inv.is_meta and torch.equal(inv, loaded.model.rotary_emb.inv_freq)
    part = schedule(skeleton).blocks[1]
    load_(skeleton, ckpt.read(part.tensors))
    layer = skeleton.model.layers[1]
    assert not layer.mlp.up_proj.weight.is_meta and skeleton.model.layers[0].mlp.up_proj.weight.is_meta
    assert torch.equal(layer.mlp.up_proj.weight, loaded.model.layers[1].mlp.up_proj.weight)
    release_(skeleton, list(part.tensors))
    assert all(p.is_meta for p in skeleton.parameters())


def test_schedule_parts_in_order(src):
    sched = schedule(build_skeleton(Checkpoint(src)))
    assert sched.container == "model.layers" and sched.prefix.tensors == ("model.embed_tokens.weight",)
    assert [p.name for p in sched.blocks] == ["model.layers.0", "model.layers.1"]
    assert sched.suffix.tensors == ("model.norm.weight", "lm_head.weight")
    assert all(n.startswith("model.layers.1.") for n in sched.blocks[1].tensors)


def test_lazy_tensors_read_on_demand_within_budget(src):
    ckpt = Checkpoint(src)
    skeleton = build_skeleton(ckpt)
    names = schedule(skeleton).blocks[0].tensors
    budget = max(ckpt.tensors[n].nbytes for n in names)
    lazy = LazyTensors(skeleton, ckpt, budget)
    assert lazy.reads == 0 and len(lazy) == len(skeleton.state_dict())
    first = lazy[names[-1]]
    assert lazy[names[-1]] is first and lazy.reads == 1  # cached
    for n in names:
        lazy[n]
    assert sum(t.numel() * t.element_size() for t in lazy._cache.values()) <= budget
