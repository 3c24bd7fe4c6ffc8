"""secateurs prune --compensate / --drop-layers / --latency map to the Python API keywords."""

import torch

from secateurs.cli.main import main

MLP_SPEC = "secateurs.testing.toys:MLP"
STACK = "secateurs.testing.residual:ResidualStack"


def test_compensate_refits_and_reports(tmp_path, run_json):
    torch.manual_seed(0)
    rc, info, err = run_json(["prune", MLP_SPEC, "--input-shape", "4,6", "-o", str(tmp_path / "c"), "--ratio", "0.5",
                              "--compensate", "lstsq", "--calibration", "synthetic", "--no-bench"])
    assert rc == 0, err
    comp = info["compensation"]
    assert comp["method"] == "lstsq" and comp["error_after"] <= comp["error_before"]
    assert info["settings"]["compensation"]["method"] == "lstsq"


def test_drop_layers_removes_blocks(tmp_path, run_json):
    torch.manual_seed(0)
    rc, info, err = run_json(["prune", STACK, "--input-shape", "4,8", "-o", str(tmp_path / "d"), "--ratio", "0",
                              "--drop-layers", "1", "--calibration", "synthetic", "--no-bench"])
    assert rc == 0, err
    (gone,) = info["dropped_layers"].values()
    assert len(gone) == 1
    assert info["counts"]["params_after"] < info["counts"]["params_before"]
    assert info["verification"]["ok"]
    dropped_rows = [r for r in info["layers"] if r["after"] == 0]  # the report's width table shows the dropped block
    assert dropped_rows and all(f".{gone[0]}." in r["name"] for r in dropped_rows)


def test_data_options_without_calibration_fail_before_any_work(tmp_path, capsys):
    for flag, value in (("--compensate", "bias"), ("--drop-layers", "1")):
        rc = main(["prune", MLP_SPEC, "--input-shape", "4,6", "-o", str(tmp_path / "x"), flag, value])
        assert rc != 0
        assert f"{flag} needs calibration data" in capsys.readouterr().err
        assert not (tmp_path / "x").exists()
