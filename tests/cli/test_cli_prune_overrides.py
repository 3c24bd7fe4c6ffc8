"""prune --overrides FILE and --sensitivity DIR: per-group ratios, and the sensitivity curves in the report."""

import json

import pytest

from secateurs.cli.main import main
from secateurs.plans import Plan

SPEC = "secateurs.testing.models:TinyViT"
SHAPE = "1,3,16,16"


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    out = tmp_path_factory.mktemp("sens") / "scan"
    assert main(["sensitivity", SPEC, "--input-shape", SHAPE, "-o", str(out), "--max-drop", "0.2", "--quiet"]) == 0
    return out


def _removed(out):
    plan = Plan.from_json((out / "plan.json").read_text())
    return {g.name: (g.n_units, len(g.removed)) for g in plan.groups}


def test_sensitivity_dir_sets_group_ratios_and_puts_curves_in_the_report(scan, tmp_path, run_json):
    overrides = json.loads((scan / "overrides.json").read_text())
    out = tmp_path / "p"
    rc, doc, _ = run_json(["prune", SPEC, "--input-shape", SHAPE, "-o", str(out), "--sensitivity", str(scan),
                           "--no-bench", "--quiet"])
    assert rc == 0 and doc["verification"]["ok"]
    for key, ratio in overrides.items():  # every group named by the scan is pruned as far as the scan allowed
        units, removed = _removed(out)[key.removeprefix("group:")]
        assert removed == int(ratio * units)
    assert doc["sensitivity"]["overrides"] == overrides
    md = (out / "report.md").read_text()
    assert "## Sensitivity" in md and md.count("| `blocks.") >= len(overrides)
    html = (out / "report.html").read_text()
    assert "<h2>Sensitivity</h2>" in html and html.count("data:image/png;base64,") == 3  # totals, widths, sensitivity


def test_overrides_file_on_top_of_a_ratio(tmp_path, run_json):
    (tmp_path / "o.json").write_text(json.dumps({"group:blocks.0.fc1.bias[dim 0]": 0.75}))
    out = tmp_path / "p"
    rc, doc, _ = run_json(["prune", SPEC, "--input-shape", SHAPE, "-o", str(out), "--ratio", "0.25",
                           "--overrides", str(tmp_path / "o.json"), "--no-bench", "--quiet"])
    assert rc == 0 and "sensitivity" not in doc
    removed = _removed(out)
    assert removed["blocks.0.fc1.bias[dim 0]"] == (64, 48)
    assert removed["blocks.1.fc1.bias[dim 0]"] == (64, 16)  # the base ratio


@pytest.mark.parametrize("content,flag,match", [
    ('["not", "a", "mapping"]', "--overrides", "must map patterns to ratios"),
    ("{oops", "--overrides", "not valid JSON"),
    (None, "--sensitivity", "not a directory written by `secateurs sensitivity`"),
])
def test_bad_override_inputs_fail_in_one_line_before_the_model_is_built(tmp_path, capsys, content, flag, match):
    target = tmp_path / "o.json"
    if content is not None:
        target.write_text(content)
    capsys.readouterr()
    rc = main(["prune", SPEC, "--input-shape", SHAPE, "-o", str(tmp_path / "p"), flag, str(target), "--no-bench"])
    err = capsys.readouterr().err
    assert rc == 2 and match in err and "Traceback" not in err
    assert not (tmp_path / "p").exists()
