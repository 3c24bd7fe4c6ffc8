"""The .pt2 gate: only torch's current archive layout, raw tensors, known ops and sympy size expressions load."""

import io
import json
import zipfile

import pytest
import torch

import secateurs as sc
from secateurs.cli.main import main
from secateurs.errors import FileFormatError
from secateurs.io.program import load_program
from secateurs.io.pt2_gate import check_expression, check_target
from secateurs.testing import hostile


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "MARKER"
    yield path
    assert not path.exists(), "a payload ran"


def _write(tmp_path, data, name="evil.pt2"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_legacy_layout_with_a_pickled_state_dict_is_refused_by_the_loader(tmp_path, marker):
    path = _write(tmp_path, hostile.legacy_layout_pt2(marker))
    with pytest.raises(FileFormatError, match="one root folder"):
        load_program(path)


def test_legacy_layout_is_refused_by_inspect(tmp_path, marker, capsys):
    path = _write(tmp_path, hostile.legacy_layout_pt2(marker))
    assert main(["inspect", f"file:{path}"]) == 2
    assert "never unpickles" in capsys.readouterr().err


def test_legacy_layout_named_by_a_manifest_is_refused_by_load(tmp_path, marker):
    from secateurs.testing.models import TinyResNet

    model = TinyResNet(width=8).eval()
    report = sc.prune(model, torch.randn(1, 3, 16, 16), ratio=0.5)
    root = tmp_path / "saved"
    sc.save(model, report.plan, root)
    evil = _write(tmp_path, hostile.legacy_layout_pt2(marker))
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["model_spec"] = f"file:{evil}"  # a hand-edited manifest records no checksum for it
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(FileFormatError, match="never unpickles"):
        sc.load(root)


def test_sympy_expression_that_is_python_code_is_refused(tmp_path, marker):
    path = _write(tmp_path, hostile.expression_pt2(marker))
    with pytest.raises(FileFormatError, match="symbolic expression"):
        load_program(path)


@pytest.mark.parametrize("target", ["torch.os.system", "torch._ops.os.system", "torch.ops.aten.__class__.__init__.x",
                                    "builtins.eval", "#custom:op"])
def test_graph_targets_outside_the_registered_ops_are_refused(tmp_path, target):
    path = _write(tmp_path, hostile.target_pt2(target))
    with pytest.raises(FileFormatError, match="graph target"):
        load_program(path)


def _current(edit=None, add=None, compression=zipfile.ZIP_STORED):
    return hostile.rewrite_zip(hostile.program_bytes(), edit or (lambda n, c: c), add, compression)


@pytest.mark.parametrize("case,match", [
    ({"add": {"{root}/data/aotinductor/model/model.so": b"\x7fELF"}}, "outside the torch.export archive layout"),
    ({"add": {"{root}/data/weights/model.pt": b"legacy"}}, "outside the torch.export archive layout"),
    ({"add": {"{root}/version": b"0"}}, "outside the torch.export archive layout"),
    ({"add": {"{root}/models/other.json": b"{}"}}, "only one program"),
    ({"add": {"{root}/data/weights/weight_99": b"\0" * 4}}, "named by no weights"),
    ({"add": {"{root}/../escape": b"x"}}, "plain relative path"),
    ({"compression": zipfile.ZIP_DEFLATED}, "compressed"),
    ({"edit": lambda n, c: b"1" if n.endswith("/archive_version") else c}, "archive_version"),
    ({"edit": lambda n, c: None if n.endswith("data/sample_inputs/model.pt") else c}, "sample_inputs/model.pt is missing"),
])
def test_members_outside_the_current_layout_are_refused(tmp_path, monkeypatch, case, match):
    from torch.export.pt2_archive import _package

    path = _write(tmp_path, _current(**case))
    monkeypatch.setattr(_package, "load_pt2", lambda *a, **k: pytest.fail("torch loaded a refused archive"))
    with pytest.raises(FileFormatError, match=match):
        load_program(path)


def test_pickled_sample_inputs_never_run(tmp_path, marker):
    data = _current(lambda n, c: hostile.torch_save_bytes(marker) if n.endswith("sample_inputs/model.pt") else c)
    with pytest.raises(FileFormatError, match="weights_only=False"):
        load_program(_write(tmp_path, data))


@pytest.mark.parametrize("slot,entry", [("weights", {"use_pickle": True}), ("constants", {"path_name": "custom_obj_0"}),
                                        ("weights", {"path_name": "../../x"})])
def test_payload_configs_naming_pickles_or_other_paths_are_refused(tmp_path, slot, entry):
    def edit(name, content):
        if name.endswith(f"model_{slot}_config.json"):
            doc = json.loads(content)
            doc["config"] = doc["config"] or {"c": {"path_name": "tensor_0", "use_pickle": False, "tensor_meta": {}}}
            next(iter(doc["config"].values())).update(entry)
            return json.dumps(doc).encode()
        return content

    with pytest.raises(FileFormatError, match="pickled|custom|lacks"):
        load_program(_write(tmp_path, _current(edit)))


def test_a_member_listed_twice_is_refused(tmp_path):
    data = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(hostile.program_bytes())) as zin, zipfile.ZipFile(data, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, zin.read(info.filename))
        first = zin.infolist()[0]
        with pytest.warns(UserWarning, match="Duplicate"):
            zout.writestr(first, b"other")
    with pytest.raises(FileFormatError, match="twice"):
        load_program(_write(tmp_path, data.getvalue()))


def test_programs_with_symbolic_sizes_still_load(tmp_path):
    program = load_program(_write(tmp_path, hostile.program_bytes(dynamic=True), "dynamic.pt2"))
    assert program.module(torch.randn(5, 4)).shape == (5, 3)


@pytest.mark.parametrize("text", ["Symbol('s77', positive=True, integer=True)",
                                  "FloorDiv(Mul(Integer(2), Symbol('s1', integer=True)), Integer(-3))",
                                  "Float('1.5', precision=53)"])
def test_srepr_expressions_pass(text):
    check_expression(text, "x")


@pytest.mark.parametrize("text", ["__import__('os')", "Symbol('x').__class__", "open('f')", "Symbol(\"x\")", "[1]",
                                  "lambda: 1", "Integer(1); 2"])
def test_other_expressions_fail(text):
    with pytest.raises(FileFormatError):
        check_expression(text, "x")


def test_registered_ops_and_sym_operators_pass():
    for target in ("torch.ops.aten.linear.default", "torch.ops.aten.__and__.Tensor", "_operator.getitem",
                   "torch.ops.higher_order.wrap_with_set_grad_enabled", "torch.sym_float", "_operator.floordiv"):
        check_target(target, "x")
