"""The committed tiny Llama loads offline and has learned its corpus (numbers, not time)."""

from __future__ import annotations

import json

import pytest
import torch

from secateurs.testing.lm import (
    ASSET,
    held_out_bytes,
    load_tiny_lm,
    perplexity,
    token_batches,
    train_bytes,
    unigram_perplexity,
)

# the asset's README reports a held-out perplexity of 4.876 (CPython 3.11.7 text); the bound leaves room for
# other Python versions, whose documentation text (and so the held-out bytes) differs slightly
MAX_HELD_OUT_PPL = 5.5


def test_asset_is_small_and_has_no_pickle() -> None:
    files = {p.name: p.stat().st_size for p in ASSET.iterdir()}
    assert {"config.json", "model.safetensors", "README.md", "training.json"} <= files.keys()
    assert sum(files.values()) < 8 * 1024**2
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in files)


def test_loads_offline_and_beats_unigram(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = load_tiny_lm()
    cfg = model.config
    assert cfg.model_type == "llama" and cfg.num_hidden_layers >= 4
    assert cfg.num_key_value_heads < cfg.num_attention_heads  # GQA
    assert not model.training
    held = held_out_bytes()
    ppl = perplexity(model, held, batch_size=64)  # the whole held-out split
    base = unigram_perplexity(train_bytes(), held)
    assert ppl < MAX_HELD_OUT_PPL
    assert ppl < 0.3 * base  # far below the byte-frequency baseline (25.7)
    info = json.loads((ASSET / "training.json").read_text())
    assert info["held_out_perplexity"] < MAX_HELD_OUT_PPL


def test_token_batches_are_deterministic_windows() -> None:
    a = token_batches("train", batch_size=4, n_batches=3)
    b = token_batches("train", batch_size=4, n_batches=3)
    assert len(a) == 3 and all(x["input_ids"].shape == (4, 128) for x in a)
    assert all(torch.equal(x["input_ids"], y["input_ids"]) for x, y in zip(a, b, strict=True))
    assert torch.equal(a[0]["input_ids"][0], train_bytes()[:128])
    with pytest.raises(ValueError, match="split"):
        token_batches("test")
