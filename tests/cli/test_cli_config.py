import json

import pytest

from secateurs.cli.main import main

SPEC = "secateurs.testing.models:TinyViT"
SHAPE = "1,3,16,16"


def _run(capsys, argv):
    capsys.readouterr()
    rc = main(argv)
    return rc, capsys.readouterr().err


def _config(out):
    return json.loads((out / "plan.json").read_text())["config"]


def _dry(tmp_path, name, *extra):
    out = tmp_path / name
    return out, ["prune", SPEC, "--input-shape", SHAPE, "-o", str(out), "--dry-run", "--quiet", *extra]


@pytest.mark.parametrize("name,text", [
    ("p.yaml", "prune:\n  ratio: 0.25\n  ignore: [head]\n  round_to: 2\nexport:\n  opset: 17\n"),
    ("p.toml", "[prune]\nratio = 0.25\nignore = ['head']\nround_to = 2\n"),
    ("p.json", json.dumps({"ratio": 0.25, "ignore": ["head"], "round_to": 2})),
    ("flat.yml", "ratio: 0.25\nignore: head\nround_to: 2\n"),
])
def test_config_file_formats(tmp_path, capsys, name, text):
    cfg = tmp_path / name
    cfg.write_text(text)
    out, argv = _dry(tmp_path, "o", "--config", str(cfg))
    rc, err = _run(capsys, argv)
    assert rc == 0, err
    c = _config(out)
    assert c["target"] == {"kind": "ratio", "value": 0.25} and c["ignore"] == ["head"] and c["round_to"] == 2


def test_set_overrides_file_and_flags_win(tmp_path, capsys):
    cfg = tmp_path / "p.yaml"
    cfg.write_text("prune:\n  ratio: 0.25\n  importance: l2\n  round_to: 2\n")
    out, argv = _dry(tmp_path, "o", "--config", str(cfg), "--set", "prune.ratio=0.5", "--set", "min_keep=3",
                     "--set", "prune.importance=l1", "--importance", "fpgm", "--set", "scope=global", "--round", "1")
    rc, err = _run(capsys, argv)
    assert rc == 0, err
    c = _config(out)
    assert c["target"]["value"] == 0.5  # --set beats the file
    assert c["min_keep"] == 3 and isinstance(c["min_keep"], int)  # typed from text
    assert c["importance"] == "fpgm"  # a typed flag beats --set and the file
    assert c["round_to"] == 1  # typed (as an abbreviation), even though 1 is the default
    assert c["scope"] == "global"


@pytest.mark.parametrize("extra,match", [
    (["--set", "prune.colour=red"], "unknown option 'colour'"),
    (["--set", "prune.round_too=2"], "did you mean 'round_to'"),
    (["--set", "round_to=two"], "expected an integer, got 'two'"),
    (["--set", "no_bench=maybe"], "expected true or false"),
    (["--set", "scope=sideways"], "is not one of local, global"),
    (["--set", "bench.repeats=3"], "names 'secateurs bench'"),
    (["--set", "ratio"], "expected KEY=VALUE"),
])
def test_bad_overrides(tmp_path, capsys, extra, match):
    out, argv = _dry(tmp_path, "o", *extra)
    rc, err = _run(capsys, argv)
    assert rc == 2 and match in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("name,text,match", [
    ("c.yaml", "prune:\n  colour: red\n", "valid keys: "),
    ("c.yaml", "prune: [1, 2\n", "is not valid YAML"),
    ("c.toml", "ratio = \n", "is not valid TOML"),
    ("c.yaml", "- 1\n- 2\n", "must hold a mapping"),
    ("c.ini", "ratio=1", "unknown file type .ini"),
    ("c.yaml", "round_to: 2.5\n", "expected an integer"),
])
def test_bad_config_files(tmp_path, capsys, name, text, match):
    cfg = tmp_path / name
    cfg.write_text(text)
    out, argv = _dry(tmp_path, "o", "--config", str(cfg))
    rc, err = _run(capsys, argv)
    assert rc == 2 and match in err, err
    assert not out.exists()


def test_yaml_without_pyyaml_names_the_extra(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "yaml", None)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("ratio: 0.3\n")
    out, argv = _dry(tmp_path, "o", "--config", str(cfg))
    rc, err = _run(capsys, argv)
    assert rc == 2 and "pip install 'secateurs[config]'" in err


def test_config_for_export_and_bench(tmp_path, capsys):
    from secateurs.cli.config import options
    from secateurs.cli.main import build_parser

    build_parser()
    assert {"onnx", "int8", "opset", "exporter"} <= set(options("export"))
    assert {"repeats", "batch_sizes", "threads"} <= set(options("bench"))


def test_optional_value_flags_accept_booleans():
    from secateurs.cli.config import coerce, options
    from secateurs.cli.main import build_parser

    build_parser()
    int8 = options("export")["int8"]
    assert coerce(int8, True, "x", from_text=False) == "dynamic"
    assert coerce(int8, "static", "x", from_text=False) == "static"
    assert coerce(int8, "no", "x", from_text=True) is None
    assert coerce(options("prune")["sparsity_2to4"], "true", "x", from_text=True) == "magnitude"


@pytest.mark.parametrize("command", ["prune", "bench", "export"])
def test_each_subcommands_set_example_is_valid_for_it(command, capsys):
    """The `--set` example printed by `COMMAND --help` is accepted by that command's own parser and config."""
    import re

    from secateurs.cli.config import apply_config
    from secateurs.cli.main import build_parser

    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    example = re.search(r"e\.g\. --set (\S+)", text).group(1)
    positional = {"prune": ["m:f", "-o", "out"], "bench": ["m:f"], "export": ["dir"]}[command]
    argv = [command, *positional, "--set", example]
    args = parser.parse_args(argv)
    apply_config(args, argv)
    key, _, value = example.partition(".")[2].partition("=")
    assert str(getattr(args, key)) == value
