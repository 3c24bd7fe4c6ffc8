import json
import subprocess
import sys

import pytest
import torch

from secateurs.cli.commands import SUBCOMMANDS
from secateurs.cli.main import build_parser, main

SPEC = "secateurs.testing.models:TinyViT"  # same model as the pruned_dir fixture
SHAPE = "1,3,16,16"


def test_every_subcommand_is_registered():
    parser = build_parser()
    choices = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert set(choices) == set(SUBCOMMANDS) >= {"demo", "inspect", "prune", "report", "bench", "export"}


def test_prune_writes_model_plan_manifest_and_reports(pruned_dir):
    names = sorted(p.name for p in pruned_dir.iterdir())
    assert names == ["manifest.json", "model.int8.safetensors", "model.safetensors", "plan.json", "report.html", "report.json", "report.md"]
    doc = json.loads((pruned_dir / "report.json").read_text())
    assert doc["verification"]["ok"] and doc["counts"]["params_after"] < doc["counts"]["params_before"]
    assert [row["batch"] for row in doc["latency"]] == [1, 4]
    for row in doc["latency"]:
        assert row["before"]["repeats"] == 2 and row["before"]["threads"] == 1 and row["after"]["median_ms"] > 0
    assert doc["mac_ideal_speedup"] > 1
    assert 0 <= doc["exports"]["int8"]["rel_error"] < 0.1 and doc["exports"]["int8"]["quantized_layers"] > 0
    assert any(x["after"] < x["before"] for x in doc["layers"])
    html = (pruned_dir / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "http" not in html.split("<body>")[0]
    assert "| parameters |" in (pruned_dir / "report.md").read_text()


def test_pruned_dir_loads_without_arguments(pruned_dir):
    import secateurs as sc

    model = sc.load(pruned_dir, trust_code=True)
    assert sum(p.numel() for p in model.parameters()) == json.loads((pruned_dir / "report.json").read_text())["counts"]["params_after"]


def test_report_json_and_text(pruned_dir, run_json, capsys):
    rc, doc, _ = run_json(["report", str(pruned_dir)])
    assert rc == 0 and doc["model"]["spec"] == SPEC
    assert main(["report", str(pruned_dir)]) == 0
    assert "verification: passed" in capsys.readouterr().out
    assert main(["--json", "report", str(pruned_dir)]) == 0  # global flags work before the subcommand too
    assert json.loads(capsys.readouterr().out)["format"] == "secateurs-report"
    assert main(["--quiet", "report", str(pruned_dir)]) == 0
    assert capsys.readouterr().out == ""
    assert main(["report", str(pruned_dir), "--markdown"]) == 0
    assert "## Per-layer output width" in capsys.readouterr().out
    (pruned_dir / "report.html").unlink()
    assert main(["report", str(pruned_dir), "--rewrite", "--quiet"]) == 0
    assert "data:image/png;base64," in (pruned_dir / "report.html").read_text()


def test_bench_dir_reports_before_and_after(pruned_dir, run_json, capsys):
    rc, info, _ = run_json(["bench", str(pruned_dir), "--repeats", "2", "--batch-sizes", "1", "--trust-code"])
    assert rc == 0 and info["threads"] == 1
    assert info["results"]["after"]["params"] < info["results"]["before"]["params"]
    assert set(info["speedup"]) == {"1"}


def test_saved_dir_with_factory_spec_needs_trust_code(pruned_dir, capsys):
    assert main(["bench", str(pruned_dir), "--repeats", "1"]) == 2
    assert "--trust-code" in capsys.readouterr().err


def test_bench_model_spec(run_json):
    rc, info, _ = run_json(["bench", SPEC, "--input-shape", SHAPE, "--repeats", "1", "--batch-sizes", "1,2"])
    assert rc == 0 and [s["batch"] for s in info["results"]["model"]["latency"]] == [1, 2]


def test_export_onnx_and_int8(pruned_dir, run_json, capsys):
    pytest.importorskip("onnxruntime")
    rc, info, err = run_json(["export", str(pruned_dir), "--onnx", "--int8", "--exporter", "legacy", "--trust-code",
                              "--repeats", "3"])
    assert rc == 0, err
    assert info["exports"]["onnx"]["parity_ok"] and (pruned_dir / "model.onnx").is_file()
    timing = info["exports"]["onnx"]["timing"]  # against the unpruned model's ONNX, which is not kept
    assert timing["pruned_ms"] > 0 and timing["unpruned_ms"] > 0 and timing["repeats"] == 3
    assert timing["speedup"] == pytest.approx(timing["unpruned_ms"] / timing["pruned_ms"])
    assert sorted(p.name for p in pruned_dir.iterdir() if "onnx" in p.name) == ["model.int8.onnx", "model.onnx"]
    assert (pruned_dir / "model.int8.onnx").is_file()
    doc = json.loads((pruned_dir / "report.json").read_text())
    assert doc["exports"]["onnx"]["exporter"] == "legacy"
    assert "unpruned model's ONNX" in (pruned_dir / "report.md").read_text()


def test_inspect_json(run_json):
    rc, info, _ = run_json(["inspect", SPEC, "--input-shape", SHAPE])
    assert rc == 0 and info["params"] > 0 and info["macs"] > 0
    assert info["groups"] and all(g["units"] > 0 for g in info["groups"])
    assert isinstance(info["frozen_ops"], list)


def test_dry_run_writes_only_the_plan(tmp_path, run_json):
    out = tmp_path / "plan"
    rc, info, _ = run_json(["prune", SPEC, "--input-shape", SHAPE, "-o", str(out), "--dry-run"])
    assert rc == 0 and info["dry_run"] and info["units_removed"] > 0
    assert [p.name for p in out.iterdir()] == ["plan.json"]
    rc, info, _ = run_json(["report", str(out)])
    assert rc == 0 and info["dry_run"]


def test_python_dash_m_entry_point():
    proc = subprocess.run([sys.executable, "-m", "secateurs", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "inspect" in proc.stdout and "export" in proc.stdout


@pytest.mark.slow
def test_prune_local_hf_model(tmp_path, run_json):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("secateurs.integrations.hf.handlers")  # the engine's HF surgery adapters
    cfg = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32, architectures=["BertModel"])
    transformers.BertModel(cfg).save_pretrained(tmp_path / "bert")
    rc, info, err = run_json(["prune", f"hf:{tmp_path / 'bert'}", "--seq-len", "8", "-o", str(tmp_path / "out"),
                              "--no-bench", "--int8"])
    assert rc == 0, err
    assert info["verification"]["ok"] and info["exports"]["int8"]["quantized_layers"] > 0
    import secateurs as sc

    model = sc.load(tmp_path / "out")  # hf: specs import no code named by the file
    assert model.config.hidden_size == 16


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0 and name in capsys.readouterr().out


def test_prune_a_torch_export_program_end_to_end(tmp_path, run_json):
    """file:model.pt2 -> pruned dir with a deployable model.pt2; latency only at the program's fixed batch."""
    from secateurs.io.program import load_program
    from secateurs.io.saving import load
    from secateurs.testing.programs import PROGRAM_TOYS, export_toy

    toy = PROGRAM_TOYS["aten.view"]
    torch.manual_seed(0)
    x = toy.example()
    src = export_toy(toy.build(), x, tmp_path / "heads.pt2")
    out = tmp_path / "out"
    rc, doc, _ = run_json(["prune", f"file:{src}", "-o", str(out), "--ratio", "heads=0.5", "--repeats", "2",
                           "--batch-sizes", "1,4", "--quiet"])
    assert rc == 0 and doc["verification"]["ok"]
    assert [row["batch"] for row in doc["latency"]] == [2]  # exported at batch 2 with fixed shapes
    assert any("fixed shapes" in note for note in doc["notes"])
    deployed = load_program(out / "model.pt2").module
    rebuilt = load(out)
    assert deployed.get_parameter("q.weight").shape == (8, 16)
    torch.testing.assert_close(deployed(x), rebuilt(x))
    rc, doc, _ = run_json(["export", str(out), "--onnx", "--quiet"])
    assert rc == 0 and doc["exports"]["onnx"]["parity_ok"]


def test_export_int8_and_pt2_add_files_to_a_pruned_directory(tmp_path, run_json):
    from secateurs.io.saving import load

    out = tmp_path / "p"
    assert main(["prune", SPEC, "--input-shape", SHAPE, "-o", str(out), "--ratio", "0.5", "--no-bench", "--quiet"]) == 0
    assert not (out / "model.int8.safetensors").exists()
    rc, doc, _ = run_json(["export", str(out), "--int8", "--pt2", "--quiet", "--trust-code"])
    assert rc == 0 and doc["exports"]["int8"]["file"] == "model.int8.safetensors"
    assert doc["exports"]["pt2"]["parity_ok"] and doc["exports"]["pt2"]["file"] == "model.pt2"
    x = torch.randn(2, 3, 16, 16)
    q = load(out, trust_code=True, int8=True)
    assert type(q.blocks[0].fc1).__module__.startswith("torch.ao.nn.quantized.dynamic")
    assert doc["exports"]["int8"]["top1_agreement"] > 0.5 and q(x).shape == (2, 10)
    from secateurs.io.program import load_program

    program = load_program(out / "model.pt2")  # the recorded input has batch 1: the program is fixed to it
    x1 = x[:1]
    torch.testing.assert_close(program.module(x1), load(out, trust_code=True)(x1))
    assert "torch.export program `model.pt2`" in (out / "report.md").read_text()
