import json

import pytest
import torch

import secateurs as sc
from secateurs.cli.main import main

SPEC = "secateurs.testing.models:TinyViT"
SHAPE = "1,3,16,16"


def _run(capsys, argv):
    capsys.readouterr()
    rc = main(argv)
    return rc, capsys.readouterr().err


def _prune(out, *extra):
    return ["prune", SPEC, "--input-shape", SHAPE, "-o", str(out), "--no-bench", "--quiet", *extra]


def test_prune_with_2to4_saves_masks_and_reports_no_cpu_speedup(tmp_path, capsys):
    out = tmp_path / "s"
    rc, err = _run(capsys, _prune(out, "--ratio", "0.25", "--round-to", "4", "--sparsity-2to4"))
    assert rc == 0, err
    doc = json.loads((out / "report.json").read_text())
    s = doc["sparsity"]
    assert s["method"] == "magnitude" and s["sparsity"] == 0.5 and len(s["layers"]) == 9
    assert "no speed-up is expected on CPU" in (out / "report.md").read_text()
    assert 0 < s["fidelity"]["rel_error"] < 1
    loaded = sc.load(out, trust_code=True)
    masks = sc.io.read_masks(out)
    assert len(masks) == 9
    for name, mask in masks.items():
        w = loaded.get_parameter(name)
        assert (w[~mask] == 0).all() and (w.reshape(w.shape[0], -1, 4) == 0).sum(-1).eq(2).all()


def test_wanda_criterion_and_2to4_with_an_image_folder(tmp_path, capsys):
    from PIL import Image

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(3):
        Image.new("RGB", (32, 24), color=(60 * i, 20, 90)).save(imgs / f"{i}.jpg")
    out = tmp_path / "w"
    rc, err = _run(capsys, _prune(out, "--importance", "wanda", "--calibration", str(imgs), "--sparsity-2to4", "wanda",
                                  "--ratio", "0.25", "--round-to", "4"))
    assert rc == 0, err
    doc = json.loads((out / "report.json").read_text())
    assert doc["calibration"]["kind"] == "images" and doc["calibration"]["batches"] == 3
    assert doc["settings"]["calibration"]["batches"] == 3 and doc["sparsity"]["method"] == "wanda"


def test_synthetic_calibration_warns(tmp_path, capsys):
    rc, err = _run(capsys, _prune(tmp_path / "p", "--importance", "activation", "--calibration", "synthetic",
                                  "--calibration-batches", "2", "--dry-run"))
    assert rc == 0 and "warning: synthetic calibration" in err
    rc, err = _run(capsys, _prune(tmp_path / "q", "--importance", "l2", "--calibration", "synthetic", "--dry-run"))
    assert rc == 0 and "warning: --calibration is not used by importance 'l2'" in err
    rc, err = _run(capsys, _prune(tmp_path / "r", "--calibration", "synthetic", "--dry-run"))  # auto reads it
    assert rc == 0 and "is not used" not in err


@pytest.mark.parametrize("extra,match", [
    (["--importance", "wanda"], "needs calibration data: pass --calibration"),
    (["--sparsity-2to4", "wanda"], "--sparsity-2to4 wanda needs calibration data"),
    (["--importance", "taylor", "--calibration", "synthetic"], "needs gradients of a training loss"),
    (["--importance", "wanda", "--calibration", "nowhere"], "does not exist"),
    (["--importance", "wanda", "--calibration", "synthetic", "--calibration-batches", "0"], "--calibration-batches"),
])
def test_calibration_errors(tmp_path, capsys, extra, match):
    rc, err = _run(capsys, _prune(tmp_path / "o", *extra))
    assert rc == 2 and match in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_2to4_masks_survive_export(tmp_path, capsys):
    out = tmp_path / "e"
    assert _run(capsys, _prune(out, "--ratio", "0", "--sparsity-2to4"))[0] == 0
    rc, err = _run(capsys, ["export", str(out), "--int8", "--trust-code", "--quiet"])
    assert rc == 0, err
    assert torch.is_tensor(next(iter(sc.io.read_masks(out).values())))


def test_export_int8_static_reports_fidelity_and_latency(tmp_path, capsys):
    out = tmp_path / "r"
    argv = ["prune", "secateurs.testing.models:TinyResNet", "--input-shape", "1,3,16,16", "-o", str(out), "--no-bench",
            "--quiet"]
    assert _run(capsys, argv)[0] == 0
    rc, err = _run(capsys, ["export", str(out), "--int8", "static", "--trust-code", "--quiet"])
    assert rc == 2 and "--int8 static needs calibration data" in err
    rc, err = _run(capsys, ["export", str(out), "--int8", "static", "--onnx", "--exporter", "legacy", "--calibration",
                            "synthetic", "--calibration-batches", "2", "--trust-code", "--quiet"])
    assert rc == 0, err
    q = json.loads((out / "report.json").read_text())["exports"]["int8_static"]
    assert q["quantized"]["conv"] >= 10 and q["latency_ms"] > 0 and q["calibration_batches"] == 2
    assert q["onnx"]["file"] == "model.int8.onnx" and (out / "model.int8.onnx").is_file()
    assert q["onnx"]["max_abs_diff"] < 0.5 * q["onnx"]["ref_max_abs"] and q["onnx"]["latency_ms"] > 0
    md = (out / "report.md").read_text()
    assert "int8 static quantization" in md and "int8 static ONNX" in md


def test_prune_and_static_int8_in_one_command(tmp_path, capsys):
    out = tmp_path / "q"
    rc, err = _run(capsys, ["prune", "secateurs.testing.models:TinyResNet", "--input-shape", "1,3,16,16", "-o", str(out),
                            "--no-bench", "--quiet", "--int8", "static", "--calibration", "synthetic",
                            "--calibration-batches", "2"])
    assert rc == 0, err
    doc = json.loads((out / "report.json").read_text())
    assert doc["exports"]["int8_static"]["quantized"]["conv"] >= 10 and doc["calibration"]["kind"] == "synthetic"
    assert "warning: --calibration is not used" not in err


def test_force_is_not_configurable(tmp_path, capsys):
    rc, err = _run(capsys, _prune(tmp_path / "o", "--set", "force=true"))
    assert rc == 2 and "unknown option 'force'" in err


@pytest.mark.slow  # ~30 s on 2 shared cores: transformers import, BERT capture and calibration
def test_text_calibration_uses_the_hf_models_tokenizer(tmp_path, capsys):
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from secateurs.testing.hf import tiny

    root = tmp_path / "bert"
    tiny("bert").model.save_pretrained(root)
    words = ["[UNK]", "the", "cat", "sat", "on", "mat"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(root)
    text = tmp_path / "corpus.txt"
    text.write_text("the cat sat on the mat\n" * 20)
    out = tmp_path / "plan"
    rc, err = _run(capsys, ["prune", f"hf:{root}", "--seq-len", "8", "-o", str(out), "--importance", "activation",
                            "--calibration", str(text), "--calibration-batches", "3", "--dry-run", "--quiet"])
    assert rc == 0, err
    assert "byte-level" not in err
    assert json.loads((out / "plan.json").read_text())["settings"]["calibration"]["batches"] == 3
