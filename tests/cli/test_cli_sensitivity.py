"""``secateurs sensitivity``: table, plot and overrides written for a model named on the command line."""

import json

import pytest

from secateurs.cli.main import main

SPEC = "secateurs.testing.toys:ConvBN"


def test_sensitivity_writes_table_plot_and_overrides(tmp_path, run_json):
    out = tmp_path / "sens"
    rc, doc, err = run_json(["sensitivity", SPEC, "--input-shape", "2,3,8,8", "-o", str(out), "--ratios", "0.25,0.5",
                             "--max-drop", "0.5"])
    assert rc == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["overrides.json", "sensitivity.json", "sensitivity.md",
                                                    "sensitivity.png"]
    saved = json.loads((out / "sensitivity.json").read_text())
    assert saved["ratios"] == [0.25, 0.5] and len(saved["rows"]) == 2 * len(doc["overrides"]) == 4
    assert "output fidelity" in saved["metric"]
    overrides = json.loads((out / "overrides.json").read_text())
    assert overrides == doc["overrides"] and all(k.startswith("group:") for k in overrides)
    assert all(v in (0.0, 0.25, 0.5) for v in overrides.values())
    assert (out / "sensitivity.png").read_bytes()[:4] == b"\x89PNG"
    assert "| group | layers | kind | units | 0.25 | 0.5 |" in (out / "sensitivity.md").read_text()


def test_sensitivity_text_output_says_what_the_metric_is(tmp_path, capsys):
    assert main(["sensitivity", SPEC, "--input-shape", "1,3,8,8", "-o", str(tmp_path / "s"), "--ratios", "0.5",
                 "--groups", "conv2"]) == 0
    text = capsys.readouterr().out
    assert "not by accuracy" in text and "most sensitive" in text


@pytest.mark.parametrize("argv,message", [
    (["--ratios", "0.5,x"], "--ratios"),
    (["--ratios", "1.5"], "ratios must be distinct numbers"),
    (["--groups", "nothing"], "matches no prunable group"),
])
def test_sensitivity_bad_arguments(tmp_path, capsys, argv, message):
    assert main(["sensitivity", SPEC, "--input-shape", "1,3,8,8", "-o", str(tmp_path / "s"), *argv]) == 2
    assert message in capsys.readouterr().err
