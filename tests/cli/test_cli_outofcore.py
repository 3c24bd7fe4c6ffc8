"""secateurs prune hf:DIR -o OUT --out-of-core, and the automatic switch when the model would not fit."""

from __future__ import annotations

import json

import pytest
import torch

from secateurs.cli import _outofcore
from secateurs.cli.main import main
from secateurs.testing.hf import tiny

transformers = pytest.importorskip("transformers")


@pytest.fixture
def src(tmp_path):
    t = tiny("llama", layers=2)
    t.model.to(torch.bfloat16).save_pretrained(tmp_path / "src")
    return tmp_path / "src"


def test_out_of_core_flag_writes_a_loadable_checkpoint(src, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["--json", "prune", f"hf:{src}", "-o", str(out), "--out-of-core", "--ratio", "heads=0.5,ffn=0.3",
               "--seq-len", "8"])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["out_of_core"] and doc["params_after"] < doc["params_before"] and all(c["ok"] for c in doc["checks"])
    model = transformers.AutoModelForCausalLM.from_pretrained(out)
    assert model.config.num_key_value_heads == 1 and (out / "plan.json").is_file()


def test_switches_by_itself_when_the_model_would_not_fit(src, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(_outofcore, "available_memory", lambda: 1024)
    rc = main(["prune", f"hf:{src}", "-o", str(tmp_path / "out"), "--ratio", "ffn=0.3", "--seq-len", "8"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "pruning it out of core" in err
    assert (tmp_path / "out" / "model.safetensors.index.json").is_file()


@pytest.mark.parametrize("extra,match", [(["--dry-run"], "--dry-run is not available out of core"),
                                         (["--int8"], "--int8 is not available out of core"),
                                         (["--calibration", "synthetic", "--distill-steps", "2"],
                                          "--distill-steps is not available out of core"),
                                         (["--calibration", "synthetic", "--distill-steps", "2", "--qat"],
                                          "--qat is not available out of core")])
def test_flags_that_need_the_model_are_refused(src, tmp_path, capsys, extra, match):
    rc = main(["prune", f"hf:{src}", "-o", str(tmp_path / "out"), "--out-of-core", "--seq-len", "8", *extra])
    assert rc == 2 and match in capsys.readouterr().err


def test_only_hf_directories(tmp_path, capsys):
    rc = main(["prune", "secateurs.testing.models:TinyResNet", "-o", str(tmp_path / "out"), "--out-of-core"])
    assert rc == 2 and "hf:DIR" in capsys.readouterr().err
