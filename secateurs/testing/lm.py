"""The committed tiny byte-level Llama and its data: real English text, offline, no downloads.

The model (``assets/tiny-llama-pydoc``, trained by ``bench/train_tiny_lm.py``) reads UTF-8 bytes
(vocabulary 256) of Python's own documentation topics (``pydoc_data.topics``, shipped with CPython),
sorted by topic name. The first 90% of the byte stream is for training and calibration, the last
10% is held out for perplexity. Importing this module does not import transformers.

    from secateurs.testing.lm import load_tiny_lm, token_batches, perplexity

    model = load_tiny_lm()
    calib = token_batches("train", n_batches=8)       # [{"input_ids": (8, 128) tensor}, ...]
    ppl = perplexity(model, held_out_bytes())
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

ASSET = Path(__file__).parent / "assets" / "tiny-llama-pydoc"
VOCAB = 256
SEQ_LEN = 128
TRAIN_FRACTION = 0.9
SPLITS = ("train", "held_out")


def corpus_text() -> str:
    """The documentation topics of this Python, sorted by name and joined by blank lines."""
    import pydoc_data.topics as topics

    return "\n\n".join(topics.topics[k] for k in sorted(topics.topics))


def corpus_bytes() -> torch.Tensor:
    """The corpus as a 1-D int64 tensor of byte values."""
    return torch.frombuffer(bytearray(corpus_text().encode("utf-8")), dtype=torch.uint8).to(torch.long)


def corpus_sha256() -> str:
    """Digest of the corpus bytes: other Python versions ship different documentation text."""
    return hashlib.sha256(corpus_text().encode("utf-8")).hexdigest()


def split_bytes(data: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, held_out): the first 90% and the last 10% of the byte stream."""
    cut = int(len(data) * TRAIN_FRACTION)
    return data[:cut], data[cut:]


def train_bytes() -> torch.Tensor:
    return split_bytes(corpus_bytes())[0]


def held_out_bytes() -> torch.Tensor:
    return split_bytes(corpus_bytes())[1]


def windows(data: torch.Tensor, seq_len: int = SEQ_LEN) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-overlapping (inputs, next-byte targets) windows of ``data``, each ``(n, seq_len)``."""
    n = (len(data) - 1) // seq_len
    x = data[: n * seq_len].reshape(n, seq_len)
    y = data[1 : n * seq_len + 1].reshape(n, seq_len)
    return x, y


def token_batches(split: str = "held_out", *, batch_size: int = 8, n_batches: int | None = None,
                  seq_len: int = SEQ_LEN) -> list[dict[str, Any]]:
    """Consecutive windows of a split as ``[{"input_ids": (batch_size, seq_len)}, ...]`` (deterministic).

    Pass them as calibration batches, or to ``perplexity``. The last partial batch is dropped.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    data = train_bytes() if split == "train" else held_out_bytes()
    x, _ = windows(data, seq_len)
    count = len(x) // batch_size if n_batches is None else min(n_batches, len(x) // batch_size)
    return [{"input_ids": x[i * batch_size : (i + 1) * batch_size]} for i in range(count)]


@torch.no_grad()
def perplexity(model: nn.Module, data: torch.Tensor, *, seq_len: int = SEQ_LEN, batch_size: int = 32,
               max_windows: int | None = None) -> float:
    """Per-byte perplexity of a causal LM over the non-overlapping windows of ``data`` (eval mode)."""
    was_training = model.training
    model.eval()
    x, y = windows(data, seq_len)
    if max_windows is not None:
        x, y = x[:max_windows], y[:max_windows]
    total, count = 0.0, 0
    try:
        for i in range(0, len(x), batch_size):
            logits = model(input_ids=x[i : i + batch_size], use_cache=False).logits
            target = y[i : i + batch_size]
            total += torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1), reduction="sum").item()
            count += target.numel()
    finally:
        model.train(was_training)
    return math.exp(total / count)


def unigram_perplexity(train: torch.Tensor, held_out: torch.Tensor) -> float:
    """Perplexity of ``held_out`` under the add-one-smoothed byte frequencies of ``train`` (the baseline)."""
    counts = torch.bincount(train, minlength=VOCAB).to(torch.float64) + 1.0
    logp = (counts / counts.sum()).log()
    return math.exp(-logp[held_out].mean().item())


def load_tiny_lm(path: str | Path | None = None) -> nn.Module:
    """The committed tiny Llama (``LlamaForCausalLM``, float32, eval mode), loaded offline."""
    from transformers import AutoModelForCausalLM

    where = Path(path) if path is not None else ASSET
    if not (where / "config.json").is_file():
        raise FileNotFoundError(
            f"no tiny LM at {where}; train it with `python bench/train_tiny_lm.py --out {where}`")
    model = AutoModelForCausalLM.from_pretrained(where, local_files_only=True, dtype=torch.float32)
    return model.eval()
