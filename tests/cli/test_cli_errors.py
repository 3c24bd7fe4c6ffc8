import pytest

from secateurs.cli.main import main

SPEC = "secateurs.testing.models:TinyViT"
SHAPE = "1,3,16,16"


def _err(capsys, argv):
    capsys.readouterr()
    rc = main(argv)
    return rc, capsys.readouterr().err


def _one_error_line(err):
    lines = [line for line in err.splitlines() if not line.startswith("[secateurs]")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("argv,match", [
    (["inspect", "resnet18"], "unknown model spec"),
    (["inspect", "nope:x"], "unknown model spec"),
    (["inspect", SPEC, "--input-shape", "1,3,a"], "bad input shape"),
    (["inspect", SPEC, "--input-shape", "1,5,16,16"], "does not run on the example input"),
    (["inspect", SPEC], "--input-shape"),
    (["prune", SPEC, "--input-shape", SHAPE, "-o", "{tmp}/o", "--ratio", "1.5"], "must be a number in"),
    (["prune", SPEC, "--input-shape", SHAPE, "-o", "{tmp}/o", "--ratio", "lots"], "--ratio must be"),
    (["prune", SPEC, "--input-shape", SHAPE, "-o", "{tmp}/o", "--importance", "vibes"], "unknown importance"),
    (["prune", SPEC, "--input-shape", SHAPE, "-o", "{tmp}/o", "--round-to", "0"], "--round-to"),
    (["report", "{tmp}"], "neither report.json nor plan.json"),
    (["export", "{tmp}"], "nothing to export"),
    (["export", "{tmp}", "--onnx"], "manifest.json"),
    (["bench", "{tmp}/missing"], "unknown model spec"),
    (["prune", SPEC, "--input-shape", SHAPE, "-o", "{tmp}/o", "--macs", "0.001", "--no-bench"], "cannot be reached"),
    (["prune", SPEC, "--input-shape", SHAPE, "-o", "{tmp}/o", "--macs", "1.5", "--no-bench"], "fraction of macs KEPT"),
    (["prune", SPEC, "--input-shape", SHAPE, "-o", "{tmp}/o", "--macs", "0.5", "--ratio", "0.3", "--no-bench"], "pass one target"),
    (["prune", SPEC, "--input-shape", SHAPE, "-o", "{tmp}/o", "--max-ratio", "2", "--no-bench"], "--max-ratio must be"),
    (["prune", SPEC, "--input-shape", SHAPE, "-o", "{tmp}/o", "--importance", "wanda", "--calibration", "{tmp}/nowhere"],
     "does not exist"),
    (["inspect", "file:{tmp}/model.pt2"], "not a torch.export archive"),
    (["inspect", "file:{tmp}/model.safetensors"], "not a directory saved by secateurs"),
])
def test_bad_input_gives_one_line_and_nonzero_exit(capsys, tmp_path, monkeypatch, argv, match):
    import secateurs.cli.prune as prune

    monkeypatch.setattr(prune, "measure", lambda *a, **k: pytest.fail("bad arguments must fail before latency runs"))
    (tmp_path / "model.pt2").write_bytes(b"PK\x03\x04")
    (tmp_path / "model.safetensors").write_bytes(b"{}")
    rc, err = _err(capsys, [a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert rc == 2
    assert match in _one_error_line(err)
    assert not (tmp_path / "o").exists()


def test_missing_optional_dependency(capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "timm", None)
    rc, err = _err(capsys, ["inspect", "timm:resnet18"])
    assert rc == 2 and "pip install 'secateurs[vision]'" in _one_error_line(err)


def test_existing_output_dir_is_refused_before_any_work(capsys, tmp_path, monkeypatch):
    import secateurs.io.specs as specs

    monkeypatch.setattr(specs, "resolve", lambda s: pytest.fail("model was built"))
    (tmp_path / "o").mkdir()
    rc, err = _err(capsys, ["prune", SPEC, "--input-shape", SHAPE, "-o", str(tmp_path / "o")])
    assert rc == 2 and "--force" in _one_error_line(err)


def test_ignore_pattern_matching_nothing_warns(capsys, tmp_path):
    rc, err = _err(capsys, ["prune", SPEC, "--input-shape", SHAPE, "-o", str(tmp_path / "p"), "--dry-run",
                            "--ignore", "no_such_module", "--quiet"])
    assert rc == 0
    assert "warning: ignore pattern 'no_such_module' matches no module" in err


def test_debug_shows_the_traceback():
    from secateurs.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError):
        main(["--debug", "inspect", "nope:x"])
    with pytest.raises(InvalidArgumentError):
        main(["inspect", "nope:x", "--debug"])


def test_unexpected_errors_are_one_line_too(capsys, monkeypatch):
    import secateurs.cli.report as report

    monkeypatch.setattr(report, "run", lambda args: 1 / 0)
    monkeypatch.setattr("secateurs.cli.main.build_parser", _parser_with(report))
    rc, err = _err(capsys, ["report", "x"])
    assert rc == 1 and "ZeroDivisionError" in _one_error_line(err) and "--debug" in err


def _parser_with(module):
    import argparse

    def build():
        p = argparse.ArgumentParser(prog="secateurs")
        sub = p.add_subparsers(dest="command", required=True)
        module.add_parser(sub)
        return p

    return build


def test_prune_config_file(tmp_path, capsys):
    import json

    cfg = tmp_path / "prune.json"
    cfg.write_text(json.dumps({"ratio": 0.25, "ignore": ["head"], "round_to": 2}))
    out = tmp_path / "plan"
    rc, err = _err(capsys, ["prune", SPEC, "--input-shape", SHAPE, "-o", str(out), "--dry-run", "--config", str(cfg),
                            "--importance", "l1", "--quiet"])
    assert rc == 0, err
    config = json.loads((out / "plan.json").read_text())["config"]
    assert config["target"]["value"] == 0.25 and config["ignore"] == ["head"] and config["round_to"] == 2
    assert config["importance"] == "l1"  # the command line wins over the file's default
    cfg.write_text(json.dumps({"ratio": 0.25, "colour": "red"}))
    rc, err = _err(capsys, ["prune", SPEC, "--input-shape", SHAPE, "-o", str(tmp_path / "x"), "--config", str(cfg)])
    assert rc == 2 and "colour" in _one_error_line(err)
