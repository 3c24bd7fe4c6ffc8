"""Hostile saved directories: every file load reads, doctored every way we could think of.

Each case copies a real saved directory (weights, plan, manifest, 2:4 masks, int8 weights), doctors one
file, and loads it. Every case must end in a typed ``SecateursError``; no payload may run (its marker file
stays absent); nothing may be written or deleted (the tree and file hashes are compared before and after).
Most cases also re-hash the manifest, as a hostile author of the whole directory would.
"""

import hashlib
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

import secateurs as sc
from secateurs.cli.main import main
from secateurs.errors import SecateursError
from secateurs.io.saving import _sha256
from secateurs.quantization.dynamic import quantize_dynamic_int8
from secateurs.testing import hostile
from secateurs.testing.models import TinyResNet

SPEC = "secateurs.testing.models:TinyResNet"
FILES = ("manifest.json", "plan.json", "model.safetensors", "sparsity.safetensors", "model.int8.safetensors")


def _factory():
    return TinyResNet(width=16).eval()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    model = _factory()
    x = torch.randn(1, 3, 16, 16)
    plan = sc.prune(model, x, ratio=0.5, round_to=4).plan
    masks = sc.sparsify_2to4(model, "magnitude")
    root = tmp_path_factory.mktemp("hostile") / "saved"
    sc.save(model, plan, root, model_spec=SPEC, sparsity=masks, int8=quantize_dynamic_int8(model))
    assert {p.name for p in root.iterdir()} == set(FILES)
    return root


def _state(root):
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else
                                       ("link" if p.is_symlink() else "dir"))
            for p in sorted(Path(root).rglob("*"))}


def _manifest(d):
    return json.loads((d / "manifest.json").read_text())


def _write_manifest(d, manifest):
    (d / "manifest.json").write_text(json.dumps(manifest))


def _rehash(d):
    manifest = _manifest(d)
    manifest["files"] = {k: _sha256(d / k) for k in manifest["files"] if (d / k).is_file()}
    _write_manifest(d, manifest)


def _replace(name, data, rehash=True):
    def doctor(d, marker):
        (d / name).unlink()
        (d / name).write_bytes(data(marker) if callable(data) else data)
        if rehash:
            _rehash(d)
    return doctor


def _edit_json(name, edit, rehash=True):
    def doctor(d, marker):
        doc = json.loads((d / name).read_text())
        doc = edit(doc, d, marker) or doc
        (d / name).write_text(json.dumps(doc))
        if rehash and name != "manifest.json":
            _rehash(d)
    return doctor


def _header(name, edit):
    """Rewrite the JSON header of a safetensors file (keeping its data), then re-hash."""
    def doctor(d, marker):
        raw = (d / name).read_bytes()
        n = int.from_bytes(raw[:8], "little")
        header = edit(json.loads(raw[8:8 + n]))
        text = json.dumps(header).encode()
        (d / name).write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n:])
        _rehash(d)
    return doctor


def _first_tensor(header):
    return next(k for k in header if k != "__metadata__")


def _symlink_outside(name):
    def doctor(d, marker):
        outside = d.parent / f"outside-{name}"
        shutil.copy(d / name, outside)
        (d / name).unlink()
        (d / name).symlink_to(outside)
    return doctor


def _set(key, value):
    def edit(doc, d, marker):
        doc[key] = value(d, marker) if callable(value) else value
    return edit


def _truncate(name, keep=0.5):
    def data(d, marker):
        raw = (d / name).read_bytes()
        return raw[: int(len(raw) * keep)]
    def doctor(d, marker):
        (d / name).write_bytes(data(d, marker))
        _rehash(d)
    return doctor


def _evil_pt2(d, marker):
    path = d.parent / "evil.pt2"
    path.write_bytes(hostile.legacy_layout_pt2(marker))
    return f"file:{path}"


def _nan_shape(header):
    header[_first_tensor(header)]["shape"] = [math.nan, 3]
    return header


def _huge_offsets(header):
    header[_first_tensor(header)]["data_offsets"] = [0, 2 ** 62]
    return header


def _with_metadata(value):
    def edit(header):
        header["__metadata__"] = value
        return header
    return edit


CASES = {
    # manifest.json
    "manifest truncated": _replace("manifest.json", lambda m: b'{"format": "secateurs", "files": {', rehash=False),
    "manifest is a pickle": _replace("manifest.json", hostile.pickle_bytes, rehash=False),
    "manifest nested 100k deep": _replace("manifest.json", b"[" * 100_000 + b"]" * 100_000, rehash=False),
    "manifest files a list": _edit_json("manifest.json", _set("files", ["model.safetensors"])),
    "manifest files ../ entry": _edit_json("manifest.json", lambda doc, d, m: doc["files"].update({"../x": "0" * 64})),
    "manifest files absolute entry": _edit_json("manifest.json", lambda doc, d, m: doc["files"].update({"/etc/x": "0" * 64})),
    "manifest checksum not hex": _edit_json("manifest.json", lambda doc, d, m: doc["files"].update({"plan.json": 5})),
    "manifest aliases a list": _edit_json("manifest.json", _set("aliases", [["a", "b"]])),
    "manifest input a string": _edit_json("manifest.json", _set("input", "1,3,16,16")),
    "manifest input NaN shape": _edit_json("manifest.json", _set("input", {"shape": [1, 3, math.nan, 16]})),
    "manifest int8 a string": _edit_json("manifest.json", _set("int8", "dynamic")),
    "manifest int8 unknown mode": _edit_json("manifest.json", _set("int8", {"mode": "pickle"})),
    "manifest training a string": _edit_json("manifest.json", _set("training", "yes")),
    "manifest dtypes wrong": _edit_json("manifest.json", lambda doc, d, m: doc["dtypes"].update(
        {k: "int8" for k in doc["dtypes"]})),
    "manifest model spec an int": _edit_json("manifest.json", _set("model_spec", 5)),
    "manifest names itself": _edit_json("manifest.json", _set("model_spec", lambda d, m: f"file:{d}")),
    "manifest names a pickling .pt2": _edit_json("manifest.json", _set("model_spec", _evil_pt2)),
    "manifest source checksum differs": _edit_json("manifest.json", lambda doc, d, m: doc.update(
        model_spec=_evil_pt2(d, m), model_source={"path": str(d.parent / "evil.pt2"), "sha256": "0" * 64})),
    "manifest architecture differs": _edit_json("manifest.json", _set("architecture_pruned", "0" * 16)),
    "manifest a symlink outside": _symlink_outside("manifest.json"),
    # plan.json
    "plan truncated": _truncate("plan.json"),
    "plan is a pickle": _replace("plan.json", hostile.pickle_bytes),
    "plan nested 100k deep": _replace("plan.json", b"[" * 100_000 + b"]" * 100_000),
    "plan not UTF-8": _replace("plan.json", b"\xff\xfe{}"),
    "plan keep a list": _edit_json("plan.json", _set("keep", [])),
    "plan groups 0": _edit_json("plan.json", _set("groups", 0)),
    "plan NaN sizes": _edit_json("plan.json", lambda doc, d, m: doc["shapes"].update(
        {k: [math.nan] * len(v) for k, v in doc["shapes"].items()})),
    "plan huge sizes": _edit_json("plan.json", lambda doc, d, m: doc["shapes"].update(
        {k: [10 ** 30] * len(v) for k, v in doc["shapes"].items()})),
    "plan conv groups hint 0": _edit_json("plan.json", _set("hints", {"stem.0": {"groups": 0}})),
    "plan keep entry deleted": _edit_json("plan.json", lambda doc, d, m: doc["keep"].pop(sorted(doc["keep"])[0])),
    "plan compensation record malformed": _edit_json("plan.json", _set(
        "settings", {"compensation": {"added_biases": {"fc": "x"}}})),
    "plan a symlink outside": _symlink_outside("plan.json"),
    # model.safetensors
    "weights truncated": _truncate("model.safetensors"),
    "weights a pickle": _replace("model.safetensors", hostile.pickle_bytes),
    "weights a torch.save zip": _replace("model.safetensors", hostile.torch_save_bytes),
    "weights empty": _replace("model.safetensors", b""),
    "weights huge header length": _replace("model.safetensors", (2 ** 63).to_bytes(8, "little") + b"{}"),
    "weights header not JSON": _replace("model.safetensors", (4).to_bytes(8, "little") + b"\x80\x04K."),
    "weights NaN shape": _header("model.safetensors", _nan_shape),
    "weights offsets beyond the file": _header("model.safetensors", _huge_offsets),
    "weights unknown dtype": _header("model.safetensors", lambda h: {**h, _first_tensor(h): {
        **h[_first_tensor(h)], "dtype": "PICKLE"}}),
    "weights metadata not text": _header("model.safetensors", _with_metadata({"format": 5})),
    "weights a symlink outside": _symlink_outside("model.safetensors"),
    "weights missing": lambda d, m: (d / "model.safetensors").unlink(),
    # sparsity.safetensors
    "masks a pickle": _replace("sparsity.safetensors", hostile.pickle_bytes),
    "masks truncated": _truncate("sparsity.safetensors"),
    "masks NaN shape": _header("sparsity.safetensors", _nan_shape),
    "masks in_dims nested": _header("sparsity.safetensors", _with_metadata({"in_dims": "[" * 100_000})),
    "masks in_dims a list": _header("sparsity.safetensors", _with_metadata({"in_dims": "[1]"})),
    "masks a symlink outside": _symlink_outside("sparsity.safetensors"),
    # model.int8.safetensors (loaded with int8=True)
    "int8 a pickle": _replace("model.int8.safetensors", hostile.torch_save_bytes),
    "int8 truncated": _truncate("model.int8.safetensors"),
    "int8 huge header length": _replace("model.int8.safetensors", (2 ** 40).to_bytes(8, "little")),
    "int8 a symlink outside": _symlink_outside("model.int8.safetensors"),
}


def _load(d, name):
    if "names" in name or "source" in name:  # cases about the model spec: rebuild from it
        return sc.load(d, trust_code=True)
    if name.startswith("int8"):
        return sc.load(d, _factory, int8=True)
    if name.startswith("masks"):
        sc.io.read_masks(d)
    return sc.load(d, _factory)


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_saved_directory(saved, tmp_path, name):
    d = tmp_path / "d"
    shutil.copytree(saved, d)
    marker = tmp_path / "MARKER"
    CASES[name](d, marker)
    before = _state(tmp_path)
    with pytest.raises(SecateursError):
        _load(d, name)
    assert not marker.exists(), "a payload ran"
    assert _state(tmp_path) == before


@pytest.mark.parametrize("name", ["manifest names a pickling .pt2", "weights a pickle", "plan groups 0",
                                  "manifest names itself", "weights a symlink outside"])
@pytest.mark.parametrize("command", ["inspect", "bench", "export"])
def test_hostile_saved_directory_through_the_cli(saved, tmp_path, capsys, name, command):
    d = tmp_path / "d"
    shutil.copytree(saved, d)
    marker = tmp_path / "MARKER"
    CASES[name](d, marker)
    before = _state(tmp_path)
    argv = {"inspect": ["inspect", f"file:{d}"], "bench": ["bench", str(d), "--repeats", "1", "--batch-sizes", "1"],
            "export": ["export", str(d), "--pt2"]}[command]
    assert main([*argv, "--trust-code", "--quiet"]) == 2
    assert "unexpected" not in capsys.readouterr().err
    assert not marker.exists() and _state(tmp_path) == before


def test_the_untouched_directory_loads(saved):
    """The cases above fail because of what they doctor, not because the fixture is broken."""
    model = sc.load(saved, _factory)
    assert sc.load(saved, _factory, int8=True) is not None and sc.io.read_masks(saved)
    assert isinstance(model, TinyResNet)


@pytest.mark.parametrize("name", ["manifest architecture differs", "weights unknown dtype", "plan conv groups hint 0"])
def test_a_model_given_to_a_hostile_load_is_untouched(saved, tmp_path, name):
    d = tmp_path / "d"
    shutil.copytree(saved, d)
    CASES[name](d, tmp_path / "MARKER")
    model = _factory()
    reference = {k: (id(v), v.clone()) for k, v in model.state_dict(keep_vars=True).items()}
    with pytest.raises(SecateursError):
        sc.load(d, model=model)
    now = model.state_dict(keep_vars=True)
    assert set(now) == set(reference)
    assert all(id(now[k]) == i and torch.equal(now[k], v) for k, (i, v) in reference.items())
