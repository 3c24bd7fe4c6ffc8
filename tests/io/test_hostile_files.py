"""Hostile single files: --config YAML/TOML/JSON, calibration sources, .pt2 archives with a pickle in every slot,
and the metadata of a static int8 file. Each must give a typed error (exit code 2 on the CLI), run nothing and
write nothing."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

import secateurs as sc
from secateurs.cli.main import main
from secateurs.errors import SecateursError
from secateurs.io.calibration_sources import calibration_source
from secateurs.io.inputs import InputSpec
from secateurs.io.program import load_program
from secateurs.testing import hostile

SPEC = "secateurs.testing.models:TinyResNet"


def _state(root):
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "other")
            for p in sorted(Path(root).rglob("*"))}


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "MARKER"
    yield path
    assert not path.exists(), "a payload ran"


CONFIGS = {
    "yaml python object": ("c.yaml", lambda m: f'ratio: !!python/object/apply:builtins.open ["{m}", "w"]'),
    "yaml python name": ("c.yaml", lambda m: "ratio: !!python/name:os.system"),
    "yaml anchors bomb": ("c.yaml", lambda m: 'a: &a ["x","x","x","x","x","x","x","x","x"]\n'
                                              + "".join(f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
                                                        for p, c in zip("abcdefgh", "bcdefghi", strict=True))
                                              + "ratio: *i"),
    "yaml truncated": ("c.yaml", lambda m: "prune:\n  ratio: [0.3,"),
    "yaml a list": ("c.yaml", lambda m: "- ratio\n- 0.3"),
    "toml truncated": ("c.toml", lambda m: "[prune]\nratio = "),
    "toml huge number": ("c.toml", lambda m: "ratio = 1e999"),
    "json pickle bytes": ("c.json", lambda m: hostile.pickle_bytes(m)),
    "json nested deep": ("c.json", lambda m: "[" * 100_000),
    "json NaN ratio": ("c.json", lambda m: '{"ratio": NaN}'),
    "json wrong types": ("c.json", lambda m: '{"round_to": "eight", "ignore": {"a": 1}}'),
    "json path option an object": ("c.json", lambda m: '{"calibration": {"path": "x"}}'),
    "json unknown key": ("c.json", lambda m: '{"pickle": true}'),
    "json force": ("c.json", lambda m: '{"force": true}'),
    "json trust_code": ("c.json", lambda m: '{"trust_code": true}'),
    "json not UTF-8": ("c.json", lambda m: b"\xff\xfe\x00{"),
    "unknown suffix": ("c.pkl", lambda m: hostile.pickle_bytes(m)),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_hostile_config_files(tmp_path, marker, capsys, name):
    filename, content = CONFIGS[name]
    data = content(marker)
    (tmp_path / filename).write_bytes(data if isinstance(data, bytes) else data.encode())
    before = _state(tmp_path)
    argv = ["prune", SPEC, "--input-shape", "1,3,16,16", "-o", str(tmp_path / "out"), "--no-bench",
            "--config", str(tmp_path / filename)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "unexpected" not in err
    assert _state(tmp_path) == before


def _png(path, width, height):
    """A PNG header claiming ``width`` x ``height`` (no pixel data)."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk
                     + struct.pack(">I", zlib.crc32(chunk) & 0xFFFFFFFF))


def _file(path, data):
    path.write_bytes(data)
    return str(path)


def _folder(tmp_path, files):
    root = tmp_path / "images"
    root.mkdir()
    for name, make in files.items():
        make(root / name)
    return str(root)


CALIBRATION = {
    "image a pickle": (lambda t, m: _folder(t, {"a.png": lambda p: p.write_bytes(hostile.pickle_bytes(m))}), "img"),
    "image truncated": (lambda t, m: _folder(t, {"a.png": lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\0\0")}), "img"),
    "image decompression bomb": (lambda t, m: _folder(t, {"a.png": lambda p: _png(p, 200_000, 200_000)}), "img"),
    "image a symlink outside to a non-image": (lambda t, m: _folder(t, {"a.png": lambda p: (
        (t / "outside.bin").write_bytes(b"not an image"), p.symlink_to(t / "outside.bin"))}), "img"),
    "folder with a symlink loop and no image": (lambda t, m: _folder(t, {"loop": lambda p: p.symlink_to(p.parent)}),
                                                "img"),
    "text not UTF-8": (lambda t, m: _file(t / "c.txt", b"\xff\xfe" + hostile.pickle_bytes(m)), "text"),
    "text empty": (lambda t, m: _file(t / "c.txt", b""), "text"),
    "text is a directory named .txt": (lambda t, m: (t / "d.txt").mkdir() or str(t / "d.txt"), "img"),
    "a pickle file": (lambda t, m: _file(t / "c.pkl", hostile.pickle_bytes(m)), "img"),
    "not a path": (lambda t, m: 5, "img"),
    "missing": (lambda t, m: str(t / "nope"), "img"),
}


@pytest.mark.parametrize("name", list(CALIBRATION))
def test_hostile_calibration_sources(tmp_path, marker, name):
    make, kind = CALIBRATION[name]
    source = make(tmp_path, marker)
    before = _state(tmp_path)
    spec = InputSpec(shape=(1, 3, 8, 8)) if kind == "img" else InputSpec(seq_len=8)
    with pytest.raises(SecateursError):
        calibration_source(source, spec, max_batches=2)
    assert _state(tmp_path) == before


def _pt2_slot(slot, marker):
    program = hostile.program_bytes()

    def config_edit(suffix, entry):
        def edit(name, content):
            if name.endswith(suffix):
                doc = json.loads(content)
                doc["config"] = doc["config"] or {"c": {"path_name": "tensor_0", "tensor_meta": {}}}
                next(iter(doc["config"].values())).update(entry)
                return json.dumps(doc).encode()
            return content
        return edit

    pickle = hostile.pickle_bytes(marker)
    slots = {
        "weights raw file": (lambda n, c: pickle if n.endswith("data/weights/weight_0") else c, None),
        "weights use_pickle": (config_edit("_weights_config.json", {"use_pickle": True}), None),
        "constants custom object": (config_edit("_constants_config.json", {"path_name": "custom_obj_0"}),
                                    {"{root}/data/constants/custom_obj_0": pickle}),
        "constants opaque object": (config_edit("_constants_config.json", {"path_name": "opaque_obj_0"}),
                                    {"{root}/data/constants/opaque_obj_0": pickle}),
        "sample inputs": (lambda n, c: hostile.torch_save_bytes(marker) if n.endswith("sample_inputs/model.pt") else c,
                          None),
        "legacy weights file": (lambda n, c: c, {"{root}/data/weights/model.pt": hostile.torch_save_bytes(marker)}),
        "extra file": (lambda n, c: c, {"{root}/extra/x": pickle}),
        "models json": (lambda n, c: pickle if n.endswith("models/model.json") else c, None),
        "archive_version": (lambda n, c: pickle if n.endswith("/archive_version") else c, None),
        "aotinductor": (lambda n, c: c, {"{root}/data/aotinductor/model/x.so": pickle}),
        "executorch": (lambda n, c: c, {"{root}/data/executorch/model.pte": pickle}),
    }
    edit, add = slots[slot]
    return hostile.rewrite_zip(program, edit, add)


PT2_SLOTS = ["weights raw file", "weights use_pickle", "constants custom object", "constants opaque object",
             "sample inputs", "legacy weights file", "extra file", "models json", "archive_version", "aotinductor",
             "executorch"]


@pytest.mark.parametrize("slot", PT2_SLOTS)
def test_pt2_with_a_pickle_in_every_slot(tmp_path, marker, slot):
    path = tmp_path / "evil.pt2"
    path.write_bytes(_pt2_slot(slot, marker))
    before = _state(tmp_path)
    with pytest.raises(SecateursError):
        load_program(path)
    assert _state(tmp_path) == before


@pytest.fixture(scope="module")
def static_saved(tmp_path_factory):
    pytest.importorskip("torchao", reason="int8 static (PT2E) needs torchao: pip install 'secateurs[edge]'")
    from secateurs.quantization.static import quantize_static_int8
    from secateurs.testing.models import ConcatNet

    torch.manual_seed(0)
    spec = InputSpec(shape=(1, 3, 16, 16))
    model, x = ConcatNet().eval(), spec.make()
    plan = sc.prune(model, x, ratio=0.5).plan
    q, _ = quantize_static_int8(model, x, [spec.make(seed=i) for i in range(1, 3)], latency=False)
    return sc.save(model, plan, tmp_path_factory.mktemp("static") / "s", int8=q, input_spec=spec)


def _static_edit(edit):
    def doctor(d):
        from safetensors import safe_open
        from safetensors.torch import save_file

        path = d / "model.int8.safetensors"
        with safe_open(str(path), framework="pt") as f:
            tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())  # noqa: SIM118
        tensors, metadata = edit(tensors, metadata)
        save_file(tensors, str(path), metadata=metadata)
        manifest = json.loads((d / "manifest.json").read_text())
        manifest["files"]["model.int8.safetensors"] = hashlib.sha256(path.read_bytes()).hexdigest()
        (d / "manifest.json").write_text(json.dumps(manifest))
    return doctor


def _nodes(edit):
    def run(tensors, metadata):
        nodes = json.loads(metadata["nodes"])
        return tensors, {**metadata, "nodes": json.dumps(edit(nodes))}
    return run


def _first_arg(kind, value):
    """Replace the first float argument of the first op that has one (a quantize scale) by ``{kind: value}``."""
    def edit(nodes):
        for node in nodes:
            args = node[2]
            i = next((i for i, a in enumerate(args) if isinstance(a, dict) and "float" in a), None)
            if i is not None:
                args[i] = {kind: value} if kind else value
                return nodes
        raise AssertionError("no op with a float argument in the saved int8 graph")
    return edit


STATIC = {
    "nodes nested deep": _static_edit(lambda t, m: (t, {**m, "nodes": "[" * 100_000})),
    "nodes a mapping": _static_edit(lambda t, m: (t, {**m, "nodes": "{}"})),
    "node renamed": _static_edit(_nodes(lambda n: [["x", *e[1:]] for e in n])),
    "dtype names a torch function": _static_edit(_nodes(_first_arg("dtype", "torch.load"))),
    "float not hex": _static_edit(_nodes(_first_arg("float", "1e5; import os"))),
    "number a string": _static_edit(_nodes(_first_arg(None, "0.5"))),
    "int8 weight missing": _static_edit(lambda t, m: ({k: v for k, v in t.items() if "frozen_param" not in k}, m)),
    "check output missing": _static_edit(lambda t, m: ({k: v for k, v in t.items() if k != "::check_output"}, m)),
}


FAST_STATIC = ("float not hex", "int8 weight missing")  # the rest rebuild a PT2E int8 model each: slow


@pytest.mark.parametrize("name", [n if n in FAST_STATIC else pytest.param(n, marks=pytest.mark.slow) for n in STATIC])
def test_hostile_static_int8_file(static_saved, tmp_path, name):
    from secateurs.testing.models import ConcatNet

    d = tmp_path / "d"
    shutil.copytree(static_saved, d)
    STATIC[name](d)
    before = _state(tmp_path)
    with pytest.raises(SecateursError):
        sc.load(d, ConcatNet, int8=True)
    assert _state(tmp_path) == before
