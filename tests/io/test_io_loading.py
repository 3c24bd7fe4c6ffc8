"""load(): precision as saved, all or nothing on the model it is given, safetensors recognised by its header."""

import copy
import json

import pytest
import torch
from torch import nn

import secateurs as sc
from secateurs.errors import FileFormatError, PlanError
from secateurs.io import loading
from secateurs.io.saving import _sha256
from secateurs.testing.models import TinyResNet

X = torch.randn(2, 3, 16, 16)


def _pruned(**kwargs):
    torch.manual_seed(0)
    model = TinyResNet(width=16, **kwargs).eval()
    fresh = copy.deepcopy(model)
    return model, fresh, sc.prune(model, X, ratio=0.5).plan


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_model_cast_after_pruning_loads_back_in_its_precision(tmp_path, dtype):
    model, fresh, plan = _pruned()
    model = model.to(dtype)
    sc.save(model, plan, tmp_path / "p", model_spec="secateurs.testing.models:TinyResNet")
    loaded = sc.load(tmp_path / "p", model=copy.deepcopy(fresh))
    assert {t.dtype for t in loaded.state_dict().values() if t.is_floating_point()} == {dtype}
    for name, t in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], t), name
    assert sc.io.read_manifest(tmp_path / "p")["dtypes"]["stem.0.weight"] == str(dtype).removeprefix("torch.")


def test_a_model_pruned_in_half_precision_loads_into_a_float32_instance(tmp_path):
    torch.manual_seed(0)
    model = TinyResNet(width=16).eval().to(torch.bfloat16)
    plan = sc.plan(model, X.to(torch.bfloat16), ratio=0.5)  # the plan's fingerprint is of the bf16 model
    sc.apply(model, plan)
    sc.save(model, plan, tmp_path / "p")
    loaded = sc.load(tmp_path / "p", model_factory=lambda: TinyResNet(width=16).eval())
    assert loaded.fc.weight.dtype == torch.bfloat16 and torch.equal(loaded.fc.weight, model.fc.weight)


def test_tied_parameters_stay_tied_and_keep_requires_grad(tmp_path):
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 4)
            self.b2 = self.b

        def forward(self, x):
            return self.b2(torch.relu(self.a(x)))

    model = Tied().eval()
    plan = sc.prune(model, torch.randn(2, 8), ratio=0.5).plan
    sc.save(model.half(), plan, tmp_path / "t")
    loaded = sc.load(tmp_path / "t", model=Tied().eval())
    assert loaded.b.weight is loaded.b2.weight and loaded.a.weight.requires_grad
    assert loaded.b.weight.dtype == torch.float16


def _snapshot(model):
    tensors = {k: (id(v), v.detach().clone(), v.dtype) for k, v in model.state_dict(keep_vars=True).items()}
    attrs = {path: (type(m), {k: v for k, v in vars(m).items() if not isinstance(v, (dict, set, list))},
                    dict(m._modules), dict(m._parameters), dict(m._buffers))
             for path, m in model.named_modules()}
    return tensors, attrs


def _assert_same(model, snapshot):
    tensors, attrs = snapshot
    now = model.state_dict(keep_vars=True)
    assert set(now) == set(tensors)
    for k, (ident, value, dtype) in tensors.items():
        assert id(now[k]) == ident and now[k].dtype == dtype and torch.equal(now[k], value), k
    assert {path: (type(m), {k: v for k, v in vars(m).items() if not isinstance(v, (dict, set, list))},
                   dict(m._modules), dict(m._parameters), dict(m._buffers))
            for path, m in model.named_modules()} == attrs


@pytest.fixture(scope="module")
def half_saved(tmp_path_factory):
    model, fresh, plan = _pruned()
    root = tmp_path_factory.mktemp("load") / "p"
    sc.save(model.half(), plan, root)
    return root, fresh


def test_a_load_that_fails_after_the_plan_was_applied_leaves_the_model_as_it_was(half_saved, tmp_path):
    import shutil

    root, fresh = half_saved
    bad = tmp_path / "bad"
    shutil.copytree(root, bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["architecture_pruned"] = "0" * 16  # the check after apply fails
    (bad / "manifest.json").write_text(json.dumps(manifest))
    model = copy.deepcopy(fresh).train()
    before = _snapshot(model)
    with pytest.raises(PlanError, match="did not give the saved architecture"):
        sc.load(bad, model=model)
    _assert_same(model, before)
    assert model.training


def test_weights_of_the_wrong_kind_found_after_apply_leave_the_model_as_it_was(half_saved, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    root, fresh = half_saved
    bad = tmp_path / "bad"
    shutil.copytree(root, bad)
    tensors = load_file(str(bad / "model.safetensors"))
    tensors["fc.weight"] = tensors["fc.weight"].to(torch.int64)  # same shape, integer: found when assigning
    save_file(tensors, str(bad / "model.safetensors"))
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest.pop("dtypes", None)  # as a manifest written before dtypes were recorded
    manifest["files"]["model.safetensors"] = _sha256(bad / "model.safetensors")
    (bad / "manifest.json").write_text(json.dumps(manifest))
    model = copy.deepcopy(fresh)
    before = _snapshot(model)
    with pytest.raises(FileFormatError, match="fc.weight"):
        sc.load(bad, model=model)
    _assert_same(model, before)


def test_a_load_that_fails_at_the_last_step_leaves_the_model_as_it_was(half_saved, monkeypatch):
    root, fresh = half_saved
    model = copy.deepcopy(fresh)
    before = _snapshot(model)

    def broken(model, *args):
        raise FileFormatError("simulated failure after the weights were assigned")

    monkeypatch.setattr(loading, "_check_pruned", lambda *a: None)
    real = loading._assign_weights_

    def assign_then_fail(model, full, path):
        real(model, full, path)
        broken(model)

    monkeypatch.setattr(loading, "_assign_weights_", assign_then_fail)
    with pytest.raises(FileFormatError, match="simulated"):
        sc.load(root, model=model)
    _assert_same(model, before)
    assert model(X).dtype == torch.float32  # still runs as the unpruned float model


def _model_with_header_low_byte(byte):
    """A pruned model whose model.safetensors header length starts with ``byte`` (a buffer name pads it)."""
    from safetensors.torch import save

    from secateurs._version import __version__
    from secateurs.io.saving import _unique_tensors

    class Padded(TinyResNet):
        def __init__(self, name="p"):
            super().__init__(width=16)
            self.register_buffer(name, torch.zeros(1))

    torch.manual_seed(0)
    model = Padded().eval()
    sc.prune(model, X, ratio=0.5)
    tensors, _ = _unique_tensors(model)
    for n in range(1, 300):
        state = {("p" * n if k == "p" else k): v for k, v in tensors.items()}
        if save(state, metadata={"format": "secateurs", "version": __version__})[0] == byte:
            torch.manual_seed(0)
            model = Padded("p" * n).eval()
            fresh = copy.deepcopy(model)
            return model, fresh, sc.prune(model, X, ratio=0.5).plan
    raise AssertionError("no padding gives that header byte")


def test_a_header_length_starting_with_0x80_is_not_mistaken_for_a_pickle(tmp_path):
    model, fresh, plan = _model_with_header_low_byte(0x80)
    sc.save(model, plan, tmp_path / "p")
    assert (tmp_path / "p" / "model.safetensors").read_bytes()[0] == 0x80
    loaded = sc.load(tmp_path / "p", model=fresh)
    torch.testing.assert_close(loaded(X), model(X))


@pytest.mark.parametrize("edit,match", [
    (lambda b: b[:4], "too short"),
    (lambda b: (10**12).to_bytes(8, "little") + b[8:], "does not fit"),
    (lambda b: len(b"[1]").to_bytes(8, "little") + b"[1]", "not a JSON object"),
    (lambda b: b + b"\0" * 8, "file holds"),
])
def test_safetensors_headers_are_checked_against_the_file(half_saved, tmp_path, edit, match):
    import shutil

    root, fresh = half_saved
    bad = tmp_path / "bad"
    shutil.copytree(root, bad)
    path = bad / "model.safetensors"
    path.write_bytes(edit(path.read_bytes()))
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["files"]["model.safetensors"] = _sha256(path)  # a consistent, hand-made directory
    (bad / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(FileFormatError, match=match):
        sc.load(bad, model=copy.deepcopy(fresh))


def test_the_file_source_a_manifest_names_is_checked_against_its_recorded_checksum(tmp_path):
    from secateurs.io.program import load_program
    from secateurs.testing.programs import PROGRAM_TOYS, export_toy

    toy = PROGRAM_TOYS["aten.conv2d"]
    source = export_toy(toy.build(), toy.example(), tmp_path / "toy.pt2")
    program = load_program(source).module
    plan = sc.prune(program, toy.example(), ratio=toy.ratio).plan
    sc.save(program, plan, tmp_path / "p", model_spec=f"file:{source}")
    record = sc.io.read_manifest(tmp_path / "p")["model_source"]
    assert record == {"path": str(source), "sha256": _sha256(source)}
    torch.testing.assert_close(sc.load(tmp_path / "p")(toy.example()), program(toy.example()))
    torch.manual_seed(1)
    export_toy(toy.build(), toy.example(), source)  # another program at the same path
    with pytest.raises(FileFormatError, match="changed since this directory was saved"):
        sc.load(tmp_path / "p")
