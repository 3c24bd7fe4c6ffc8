"""Bad CLI arguments and config values are one typed error line and exit code 2, never an 'unexpected' crash."""

import pytest

from secateurs.cli.main import main

SPEC = "secateurs.testing.models:TinyResNet"


def _prune(tmp_path, *extra):
    return ["prune", SPEC, "--input-shape", "1,3,16,16", "-o", str(tmp_path / "out"), "--no-bench", *extra]


def _file(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


CASES = {
    "input too large to allocate": (lambda t: ["prune", SPEC, "--input-shape", "99999999999,3,16,16", "-o",
                                               str(t / "out"), "--no-bench"], "cannot build the example input"),
    "overrides nested too deep": (lambda t: _prune(t, "--overrides", _file(t, "o.json", "[" * 50_000)), "not valid JSON"),
    "config path option not text": (lambda t: _prune(t, "--config", _file(t, "c.json", '{"calibration": 5}')),
                                    "calibration: expected text"),
    "config list items not text": (lambda t: _prune(t, "--config", _file(t, "c.json", '{"ignore": [1]}')),
                                   "expected text"),
    "--set list not JSON": (lambda t: _prune(t, "--set", "ignore=[1"), "is not a JSON list"),
    "factory needing arguments": (lambda t: ["prune", "os:system", "-o", str(t / "out")], "needs arguments"),
    "sensitivity max-drop NaN": (lambda t: ["sensitivity", SPEC, "--input-shape", "1,3,16,16", "-o", str(t / "s"),
                                            "--max-drop", "nan"], "--max-drop"),
    "demo threads 0": (lambda t: ["demo", "--threads", "0"], "--threads"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_arguments_are_typed_errors(tmp_path, capsys, name):
    argv, match = CASES[name]
    assert main(argv(tmp_path)) == 2
    err = capsys.readouterr().err
    assert match in err and "unexpected" not in err
    assert not (tmp_path / "out").exists()
