"""The Minitron recipe in one command: activation width, depth, then logit distillation from the unpruned model."""

import json

import pytest
import torch

import secateurs as sc
from secateurs.cli.main import main

pytest.importorskip("transformers")


def test_prune_with_distillation_in_one_command(tmp_path, capsys):
    from secateurs.testing.hf import tiny

    root = tmp_path / "llama"
    tiny("llama", layers=3).model.save_pretrained(root)
    text = tmp_path / "corpus.txt"
    text.write_text("the cat sat on the mat and looked at the dog\n" * 40)  # ASCII bytes < the vocabulary of 128
    out = tmp_path / "out"
    rc = main(["prune", f"hf:{root}", "--seq-len", "8", "-o", str(out), "--importance", "activation",
               "--ratio", "ffn=0.25", "--drop-layers", "1", "--calibration", str(text), "--calibration-batches", "2",
               "--distill-steps", "3", "--distill-loss", "reverse_kl", "--distill-lr", "1e-3", "--no-bench", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 0, err
    report = json.loads((out / "report.json").read_text())
    assert report["distillation"]["steps"] == 3 and report["distillation"]["loss"] == "reverse_kl"
    model = sc.load(out)
    assert model.config.num_hidden_layers == 2 and model.config.intermediate_size == 96
    ids = torch.randint(1, 100, (1, 8))
    assert model(input_ids=ids).logits.shape == (1, 8, 128)


def test_distillation_needs_calibration(tmp_path, capsys):
    rc = main(["prune", "secateurs.testing.models:TinyViT", "--input-shape", "1,3,16,16", "-o", str(tmp_path / "o"),
               "--distill-steps", "5", "--no-bench", "--quiet"])
    assert rc != 0 and "--distill-steps distils on the --calibration" in capsys.readouterr().err
