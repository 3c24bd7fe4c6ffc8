"""``prune --qat``: quantization-aware distillation in the recovery step, then the int8 model in the directory."""

import json

import pytest
import torch

import secateurs as sc
from secateurs.cli.main import main

SPEC = "secateurs.testing.models:TinyResNet"
QAT = ["--calibration", "synthetic", "--calibration-batches", "2", "--distill-steps", "2", "--qat"]


def _prune(out, *extra):
    return main(["prune", SPEC, "--input-shape", "1,3,8,8", "-o", str(out), "--ratio", "0.5", "--no-bench", "--quiet",
                 *extra])


@pytest.mark.parametrize(("extra", "message"), [
    (["--qat"], "--qat fine-tunes with fake quantization on training data"),
    (["--qat", "--distill-steps", "2"], "--distill-steps distils on the --calibration batches"),
    (["--qat", "--calibration", "synthetic"], "pass --distill-steps N"),
    ([*QAT, "--int8", "static"], "drop --int8 static"),
    ([*QAT, "--int8"], "drop --int8 dynamic"),
    ([*QAT, "--int8-backend", "xnnpack"], "--int8-backend xnnpack is not supported"),
    ([*QAT, "--sparsity-2to4"], "cannot be combined with --sparsity-2to4"),
    (["--set", "prune.qat=true"], "--qat fine-tunes"),  # from a config value too
])
def test_qat_that_cannot_apply_is_refused_before_any_work(tmp_path, capsys, extra, message):
    out = tmp_path / "o"
    assert _prune(out, *extra) == 2
    err = capsys.readouterr().err
    assert message in err and "[secateurs] building" not in err
    assert not out.exists()


def test_report_says_how_the_int8_model_was_made():
    from secateurs.reporting.render import export_lines

    stats = {"method": "PT2E QAT (x86, torchao)", "qat_steps": 2, "quantized": {"conv": 15, "linear": 1},
             "rel_error": 0.07, "max_abs_diff": 0.006, "top1_agreement": 1.0, "file": "model.int8.safetensors"}
    line, = (s for s in export_lines({"exports": {"int8_static": stats}}) if s.startswith("int8 static"))
    assert "(PT2E QAT (x86, torchao), 2 fake-quantized training steps) of 15 conv, 1 linear layers" in line
    assert "calibration batches" not in line and line.endswith("saved as `model.int8.safetensors`")


@pytest.mark.slow  # fake-quantized training, conversion and the rebuild on load: about a minute on 2 cores
def test_qat_writes_the_int8_model_and_it_loads_as_measured(tmp_path, capsys):
    pytest.importorskip("torchao", reason="--qat needs torchao: pip install 'secateurs[edge]'")
    from secateurs.graph.outputs import flat_tensors
    from secateurs.io import read_manifest
    from secateurs.io.inputs import InputSpec
    from secateurs.quantization.dynamic import fidelity
    from secateurs.testing.models import TinyResNet

    torch.manual_seed(0)
    out = tmp_path / "q"
    assert _prune(out, *QAT) == 0, capsys.readouterr().err
    manifest = read_manifest(out)
    assert manifest["int8"] == {"mode": "static", "backend": "x86", "flow": "qat", "file": "model.int8.safetensors"}
    report = json.loads((out / "report.json").read_text())
    assert report["distillation"]["steps"] == 2 and report["distillation"]["qat"] == "int8 (x86)"
    stats = report["exports"]["int8_static"]
    assert stats["qat_steps"] == 2 and stats["quantized"] == {"conv": 15, "linear": 1}
    q, fp = sc.load(out, TinyResNet, int8=True), sc.load(out, TinyResNet)
    assert any("onednn.qconv" in str(n.target) for n in q.graph.nodes)
    x = InputSpec.from_dict(manifest["input"]).make()
    with torch.no_grad():
        again = fidelity(flat_tensors(fp.eval()(x)), flat_tensors(q(x)))
    assert again["rel_error"] == stats["rel_error"] and again["max_abs_diff"] == stats["max_abs_diff"]  # the same model
    assert 0 < stats["rel_error"] < 0.5 and stats["top1_agreement"] == 1.0


def test_qat_refuses_a_model_called_with_keywords_before_pruning(tmp_path, capsys):
    pytest.importorskip("transformers")
    from secateurs.testing.hf import tiny

    root = tmp_path / "llama"
    tiny("llama", layers=1).model.save_pretrained(root)
    text = tmp_path / "corpus.txt"
    text.write_text("the cat sat on the mat\n" * 20)
    out = tmp_path / "o"
    rc = main(["prune", f"hf:{root}", "--seq-len", "8", "-o", str(out), "--ratio", "ffn=0.25", "--calibration",
               str(text), "--distill-steps", "2", "--qat", "--no-bench", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "takes keywords ['input_ids']" in err and "--int8 dynamic" in err
    assert not out.exists()
