import copy
import json
from pathlib import Path

import pytest
import torch
from torch import nn

import secateurs as sc
from secateurs.errors import FileFormatError, InvalidArgumentError, PlanError
from secateurs.io import read_manifest, read_plan
from secateurs.io import saving as saving_mod
from secateurs.plan_codec import decode_set, encode_set
from secateurs.testing.models import TinyResNet

SPEC = "secateurs.testing.models:TinyResNet"


def _pruned(width=32):
    model = TinyResNet(width=width).eval()
    fresh = copy.deepcopy(model)
    x = torch.randn(2, 3, 16, 16)
    report = sc.prune(model, x, ratio=0.5)
    return model, fresh, report.plan, x


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    model, fresh, plan, x = _pruned()
    root = tmp_path_factory.mktemp("io") / "pruned"
    sc.save(model, plan, root, model_spec=SPEC)
    return root, model, fresh, plan, x


def _copy(saved, tmp_path):
    import shutil

    dst = tmp_path / "copy"
    shutil.copytree(saved[0], dst)
    return dst


def test_round_trip_with_fresh_model_and_with_factory(saved):
    root, model, fresh, plan, x = saved
    loaded = sc.load(root, model=copy.deepcopy(fresh))
    torch.testing.assert_close(loaded(x), model(x))
    other = sc.load(root, model_factory=TinyResNet)  # other init: weights come from the file
    assert not other.training  # restored to the mode it was saved in
    torch.testing.assert_close(other(x), model(x))


def test_manifest_records_versions_spec_and_both_fingerprints(saved):
    from secateurs.graph.analysis import fingerprint

    root, model, fresh, plan, _ = saved
    m = read_manifest(root)
    assert m["format_version"] == 1 and m["torch_version"] == torch.__version__ and m["library_version"] == sc.__version__
    assert m["model_spec"] == SPEC
    assert m["fingerprint_unpruned"] == fingerprint(fresh) == plan.fingerprint
    assert m["fingerprint_pruned"] == fingerprint(model) != m["fingerprint_unpruned"]
    assert read_plan(root).keep == plan.keep
    assert sorted(p.name for p in root.iterdir()) == ["manifest.json", "model.safetensors", "plan.json"]


def test_recorded_factory_spec_needs_trust_code(saved, monkeypatch):
    import secateurs.io.specs as specs

    monkeypatch.setattr(specs, "resolve", lambda *a, **k: pytest.fail("imported code named by the file"))
    with pytest.raises(InvalidArgumentError, match="trust_code=True"):
        sc.load(saved[0])


def test_load_rebuilds_from_recorded_spec(saved):
    root, model, *_ = saved
    loaded = sc.load(root, trust_code=True)
    loaded.eval()
    torch.testing.assert_close(loaded(saved[4]), model(saved[4]))


def test_no_pickle_is_ever_read(saved, monkeypatch):
    import pickle

    def boom(*a, **k):
        raise AssertionError("pickle used")

    monkeypatch.setattr(pickle, "load", boom)
    monkeypatch.setattr(pickle, "loads", boom)
    monkeypatch.setattr(torch, "load", boom)
    sc.load(saved[0], model=copy.deepcopy(saved[2]))


def test_existing_directory_is_not_overwritten_without_flag(saved, tmp_path):
    root, model, _, plan, _ = saved
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(InvalidArgumentError, match="already exists"):
        sc.save(model, plan, target)
    assert (target / "keep.txt").read_text() == "mine"
    with pytest.raises(InvalidArgumentError, match="only a directory secateurs wrote"):
        sc.save(model, plan, target, overwrite=True)  # not a directory secateurs wrote: never replaced
    assert sorted(p.name for p in target.iterdir()) == ["keep.txt"]
    (target / "keep.txt").unlink()
    with pytest.raises(InvalidArgumentError, match="holds no manifest"):
        sc.save(model, plan, target, overwrite=True)  # an empty directory is not ours either
    target.rmdir()
    sc.save(model, plan, target)
    sc.save(model, plan, target, overwrite=True)  # ours: replaced
    assert (target / "model.safetensors").is_file()


@pytest.mark.parametrize("fail_on", ["model.safetensors", "manifest.json"])
def test_simulated_write_failure_leaves_nothing(saved, tmp_path, monkeypatch, fail_on):
    root, model, _, plan, _ = saved
    real_text = saving_mod.write_text
    import safetensors.torch as st

    real_save_file = st.save_file

    def failing_text(path, text):
        if path.name == fail_on:
            path.write_bytes(text.encode()[:10])
            raise OSError(28, "No space left on device")
        real_text(path, text)

    def failing_save_file(tensors, filename, metadata=None):
        if fail_on == "model.safetensors":
            Path(filename).write_bytes(b"partial")
            raise OSError(28, "No space left on device")
        real_save_file(tensors, filename, metadata=metadata)

    monkeypatch.setattr(saving_mod, "write_text", failing_text)
    monkeypatch.setattr(st, "save_file", failing_save_file)
    with pytest.raises(OSError, match="No space"):
        sc.save(model, plan, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_the_old_directory(saved, tmp_path, monkeypatch):
    root, model, _, plan, _ = saved
    target = tmp_path / "out"
    sc.save(model, plan, target)
    before = sorted(p.name for p in target.iterdir())

    def failing(path, text):
        raise OSError(5, "I/O error")

    monkeypatch.setattr(saving_mod, "write_text", failing)
    with pytest.raises(OSError):
        sc.save(model, plan, target, overwrite=True)
    assert sorted(p.name for p in target.iterdir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_truncated_weights_are_refused(saved, tmp_path):
    root = _copy(saved, tmp_path)
    data = (root / "model.safetensors").read_bytes()
    (root / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(FileFormatError, match="truncated, corrupt or was edited"):
        sc.load(root, model=copy.deepcopy(saved[2]))


def _rehash(root):
    m = json.loads((root / "manifest.json").read_text())
    m["files"] = {k: saving_mod._sha256(root / k) for k in m["files"]}
    (root / "manifest.json").write_text(json.dumps(m))


def test_truncated_weights_with_matching_checksum_still_refused(saved, tmp_path):
    root = _copy(saved, tmp_path)
    data = (root / "model.safetensors").read_bytes()
    (root / "model.safetensors").write_bytes(data[:-100])
    _rehash(root)
    with pytest.raises(FileFormatError, match="safetensors"):
        sc.load(root, model=copy.deepcopy(saved[2]))


def test_edited_plan_is_refused(saved, tmp_path):
    root = _copy(saved, tmp_path)
    plan = json.loads((root / "plan.json").read_text())
    fqn = next(iter(plan["keep"]))
    dim = next(iter(plan["keep"][fqn]))
    entry = plan["index_sets"][plan["keep"][fqn][dim]]  # format 2: an index set, as runs or a bitmap
    plan["index_sets"].append(encode_set(decode_set(entry, fqn)[:-1], entry["size"]))
    plan["keep"][fqn][dim] = len(plan["index_sets"]) - 1
    (root / "plan.json").write_text(json.dumps(plan))
    with pytest.raises(FileFormatError, match="plan.json"):
        sc.load(root, model=copy.deepcopy(saved[2]))
    _rehash(root)  # even with a forged checksum the pruned fingerprint or the weights disagree
    with pytest.raises((PlanError, FileFormatError)):
        sc.load(root, model=copy.deepcopy(saved[2]))


def test_pickle_where_safetensors_expected(saved, tmp_path):
    root = _copy(saved, tmp_path)
    torch.save(saved[1].state_dict(), root / "model.safetensors")
    _rehash(root)
    with pytest.raises(FileFormatError, match="pickle"):
        sc.load(root, model=copy.deepcopy(saved[2]))


def test_plan_for_a_different_model(saved):
    with pytest.raises(PlanError, match="different model"):
        sc.load(saved[0], model=TinyResNet(width=8).eval())
    with pytest.raises(PlanError, match="different model"):
        sc.load(saved[0], model=saved[1])  # already pruned


@pytest.mark.parametrize("content", [None, "{not json", json.dumps({"format": "other"})])
def test_missing_or_bad_manifest(saved, tmp_path, content):
    root = _copy(saved, tmp_path)
    if content is None:
        (root / "manifest.json").unlink()
    else:
        (root / "manifest.json").write_text(content)
    with pytest.raises(FileFormatError):
        sc.load(root, model=copy.deepcopy(saved[2]))


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.mid = nn.Linear(8, 16)
        self.back = nn.Linear(16, 8)
        self.out = nn.Linear(8, 20, bias=False)
        self.out.weight = self.emb.weight

    def forward(self, ids):
        return self.out(self.back(torch.relu(self.mid(self.emb(ids)))))


def test_tied_weights_are_stored_once_and_stay_tied(tmp_path):
    model = Tied().eval()
    fresh = copy.deepcopy(model)
    ids = torch.randint(0, 20, (2, 5))
    # prune only the hidden layer between mid and back: tied-weight coupling is the engine's business
    plan = sc.plan(model, ids, ratio=0.5, ignore=["emb", "out"])
    sc.apply(model, plan)
    assert model.mid.weight.shape[0] < 16
    sc.save(model, plan, tmp_path / "tied")
    assert read_manifest(tmp_path / "tied")["aliases"] == {"out.weight": "emb.weight"}
    loaded = sc.load(tmp_path / "tied", model=fresh)
    assert loaded.out.weight is loaded.emb.weight
    torch.testing.assert_close(loaded(ids), model(ids))


def test_save_checks_arguments(saved, tmp_path):
    root, model, fresh, plan, _ = saved
    with pytest.raises(TypeError):
        sc.save("model", plan, tmp_path / "a")
    with pytest.raises(PlanError, match="does not match the plan"):
        sc.save(fresh, plan, tmp_path / "b")  # unpruned model with a pruning plan
    with pytest.raises(InvalidArgumentError, match="reserved"):
        sc.save(model, plan, tmp_path / "c", extra_files={"plan.json": "x"})
    assert not any(tmp_path.iterdir())


def test_import_secateurs_stays_cheap_and_exports_save_load():
    import subprocess
    import sys

    code = ("import sys, secateurs; assert 'safetensors' not in sys.modules and 'secateurs.io' not in sys.modules; "
            "from secateurs.io import save, load; assert secateurs.save is save and secateurs.load is load")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_weights_that_do_not_fit_leave_the_given_model_untouched(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    root = _copy(saved, tmp_path)
    tensors = load_file(str(root / "model.safetensors"))
    name = next(iter(tensors))
    tensors[name] = torch.zeros(3, 3)
    save_file(tensors, str(root / "model.safetensors"))
    _rehash(root)
    fresh = copy.deepcopy(saved[2])
    shapes = {k: v.shape for k, v in fresh.state_dict().items()}
    with pytest.raises(FileFormatError, match=name):
        sc.load(root, model=fresh)
    assert {k: v.shape for k, v in fresh.state_dict().items()} == shapes
