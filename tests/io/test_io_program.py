"""Loading .pt2 programs without pickle, their default inputs, and writing pruned programs atomically."""

import io
import json
import zipfile

import pytest
import torch
from torch import nn

from secateurs.errors import FileFormatError, InvalidArgumentError
from secateurs.io import program as program_io
from secateurs.io.program import check_archive, load_program, save_program, static_batch
from secateurs.io.specs import resolve
from secateurs.testing.programs import PROGRAM_TOYS, export_toy


@pytest.fixture
def toy_file(tmp_path):
    toy = PROGRAM_TOYS["aten.conv2d"]
    return export_toy(toy.build(), toy.example(), tmp_path / "toy.pt2"), toy


def _rewrite(src, dst, edit):
    """Copy the zip ``src`` to ``dst`` with ``edit(name, data) -> data`` applied to each member."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, edit(info.filename, zin.read(info.filename)))
    return dst


def test_a_program_loads_as_a_module_whose_eval_works(toy_file):
    path, toy = toy_file
    loaded = load_program(path)
    x = toy.example()
    assert loaded.module.eval() is loaded.module  # ExportedProgram.module() itself refuses eval()
    eager = toy.build().eval()
    eager.load_state_dict(loaded.module.state_dict())  # same parameter names as the exported module
    torch.testing.assert_close(loaded.module(x), eager(x))
    assert loaded.input_spec().shape == tuple(x.shape) and static_batch(loaded.module) == 1


def test_source_spec_gives_the_recorded_input(toy_file):
    path, toy = toy_file
    source = resolve(f"file:{path}")
    assert source.kind == "program" and source.default_input.shape == toy.shape
    assert isinstance(source.build(), torch.fx.GraphModule) and isinstance(source.build(), torch.fx.GraphModule)


def test_pickled_weights_are_refused_before_torch_loads_anything(toy_file, tmp_path, monkeypatch):
    path, _ = toy_file

    def mark_pickled(name, data):
        if name.endswith("_weights_config.json"):
            config = json.loads(data)
            next(iter(config["config"].values()))["use_pickle"] = True
            return json.dumps(config).encode()
        return data

    bad = _rewrite(path, tmp_path / "pickled.pt2", mark_pickled)
    monkeypatch.setattr(torch.export, "load", lambda *a, **k: pytest.fail("torch.export.load ran"))
    with pytest.raises(FileFormatError, match="never unpickles"):
        load_program(bad)


def test_a_pt_member_that_needs_full_unpickling_is_refused(toy_file, tmp_path):
    path, _ = toy_file
    evil = io.BytesIO()
    torch.save({"callable": print}, evil)  # a global outside the weights_only allowlist

    def swap_inputs(name, data):
        return evil.getvalue() if name.endswith(".pt") else data

    with pytest.raises(FileFormatError, match="weights_only=False"):
        check_archive(_rewrite(path, tmp_path / "evil.pt2", swap_inputs))


@pytest.mark.parametrize("content,match", [(b"not a zip", "not a torch.export archive"),
                                           (None, "not a torch.export program")])
def test_files_that_are_not_programs(tmp_path, content, match):
    path = tmp_path / "x.pt2"
    if content is None:
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("something.txt", "hello")
    else:
        path.write_bytes(content)
    with pytest.raises(FileFormatError, match=match):
        check_archive(path)
    with pytest.raises(InvalidArgumentError, match="no such file"):
        check_archive(tmp_path / "missing.pt2")


def test_token_programs_record_seq_len_vocab_and_keyword_constants(tmp_path):
    class Tokens(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.head = nn.Embedding(50, 8), nn.Linear(8, 50)

        def forward(self, input_ids, use_cache=True):
            return self.head(self.emb(input_ids))

    ids = torch.randint(0, 50, (1, 6))
    ep = torch.export.export(Tokens().eval(), (), {"input_ids": ids, "use_cache": False}, strict=False)
    torch.export.save(ep, str(tmp_path / "t.pt2"))
    spec = load_program(tmp_path / "t.pt2").input_spec()
    assert (spec.seq_len, spec.vocab_size, spec.constants) == (6, 50, (("use_cache", False),))
    assert spec.make()["use_cache"] is False


def test_failed_program_write_leaves_the_old_file(toy_file, tmp_path, monkeypatch):
    path, toy = toy_file
    target = tmp_path / "out.pt2"
    target.write_bytes(b"old")

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(program_io, "write_bytes", broken)
    with pytest.raises(OSError, match="disk full"):
        save_program(load_program(path).module, toy.example(), target)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.pt2", "toy.pt2"]


def test_exported_program_module_gets_a_clear_error_and_program_module_works(toy_file):
    import secateurs as sc
    from secateurs.errors import InvalidTypeError
    from secateurs.io.program import program_module

    path, toy = toy_file
    ep = torch.export.load(str(path))
    with pytest.raises(InvalidTypeError, match="program_module"):
        sc.analyze(ep.module(), toy.example())
    module = program_module(ep)
    report = sc.prune(module, toy.example(), ratio=toy.ratio)
    assert report.verification.ok and report.plan.literals
