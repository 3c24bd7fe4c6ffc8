"""`prune`/`sensitivity -o DIR`: --force replaces only what secateurs wrote, never the model's source; bad output
paths fail before any work with exit code 2."""

import hashlib
import json
from pathlib import Path

import pytest

import secateurs as sc
from secateurs.cli import prune as prune_cli
from secateurs.cli.main import main
from secateurs.errors import FileFormatError

SPEC = "secateurs.testing.models:TinyResNet"
ARGS = ["--input-shape", "1,3,16,16", "--ratio", "0.5", "--no-bench", "--quiet"]


def _state(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(Path(root).rglob("*"))}


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if the model is built: the command must stop before any work."""
    monkeypatch.setattr(prune_cli, "load_model", lambda *a: pytest.fail("the model was built"))


@pytest.fixture(scope="module")
def pruned(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli-out") / "pruned"
    assert main(["prune", SPEC, *ARGS, "-o", str(out)]) == 0
    return out


def test_force_refuses_a_directory_holding_a_user_file(tmp_path, capsys, no_work):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    assert main(["prune", SPEC, *ARGS, "-o", str(out), "--force"]) == 2
    assert "only a directory secateurs wrote" in capsys.readouterr().err
    assert (out / "thesis.tex").read_text() == "years of work"


def test_force_refuses_a_secateurs_directory_with_a_user_file_added(tmp_path, pruned, capsys, no_work):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(pruned, out)
    (out / "notes.txt").write_text("mine")
    assert main(["prune", SPEC, *ARGS, "-o", str(out), "--force"]) == 2
    assert "notes.txt" in capsys.readouterr().err and (out / "notes.txt").exists()


def test_force_replaces_a_directory_prune_wrote(tmp_path):
    out = tmp_path / "again"
    assert main(["prune", SPEC, *ARGS, "-o", str(out), "--dry-run"]) == 0
    assert main(["prune", SPEC, *ARGS, "-o", str(out), "--force"]) == 0
    assert (out / "model.safetensors").is_file()


def test_help_says_what_force_replaces(capsys):
    with pytest.raises(SystemExit):
        main(["prune", "--help"])
    assert "directory secateurs wrote" in " ".join(capsys.readouterr().out.split())


def test_pruning_a_directory_into_itself_is_refused(pruned, capsys, no_work):
    before = _state(pruned)
    assert main(["prune", f"file:{pruned}", *ARGS, "-o", str(pruned), "--force", "--trust-code"]) == 2
    assert "is the model source" in capsys.readouterr().err
    assert _state(pruned) == before
    sc.load(pruned, trust_code=True)


def test_output_holding_the_source_program_is_refused(tmp_path, capsys, no_work):
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.pt2").write_bytes(b"")
    (out / "plan.json").write_text('{"format": 1, "keep": {}, "shapes": {}}')
    assert main(["prune", f"file:{out / 'model.pt2'}", *ARGS, "-o", str(out), "--force"]) == 2
    assert "holds the model source" in capsys.readouterr().err


def test_sensitivity_into_its_source_is_refused(pruned, capsys):
    before = _state(pruned)
    assert main(["sensitivity", f"file:{pruned}", "-o", str(pruned), "--force", "--trust-code", "--quiet"]) == 2
    assert "model source" in capsys.readouterr().err and _state(pruned) == before


def _chain(tmp_path, pruned, names):
    import shutil

    roots = [tmp_path / n for n in names]
    for root in roots:
        shutil.copytree(pruned, root)
    for root, nxt in zip(roots, roots[1:] + roots[:1], strict=True):
        manifest = json.loads((root / "manifest.json").read_text())
        manifest["model_spec"] = f"file:{nxt}"
        manifest.pop("model_source", None)
        (root / "manifest.json").write_text(json.dumps(manifest))
    return roots


@pytest.mark.parametrize("names", [["self"], ["a", "b"], ["a", "b", "c"]])
def test_manifest_source_loops_are_a_typed_error(tmp_path, pruned, capsys, names):
    roots = _chain(tmp_path, pruned, names)
    with pytest.raises(FileFormatError, match="loop"):
        sc.load(roots[0])
    assert main(["inspect", f"file:{roots[0]}"]) == 2
    assert "loop" in capsys.readouterr().err


def test_output_under_a_file_fails_before_work(tmp_path, capsys, no_work):
    (tmp_path / "file").write_text("x")
    assert main(["prune", SPEC, *ARGS, "-o", str(tmp_path / "file" / "out")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_unwritable_output_folder_fails_before_work(tmp_path, capsys, monkeypatch, no_work):
    from secateurs.io import atomic

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(atomic.tempfile, "mkdtemp", refuse)
    assert main(["prune", SPEC, *ARGS, "-o", str(tmp_path / "out")]) == 2
    assert "cannot write into" in capsys.readouterr().err
