"""Train the tiny byte-level Llama used by LLM pruning tests and benchmarks (reproducible, CPU).

Data: Python's own documentation topics (``pydoc_data.topics``, ~466 KB of English text that
ships with CPython), sorted by topic name, encoded as UTF-8 bytes (vocabulary = 256 byte values).
The last 10% of the byte stream is held out for perplexity; the first 90% is for training and
calibration.

    python bench/train_tiny_lm.py --out secateurs/testing/assets/tiny-llama-pydoc

Writes a Hugging Face ``save_pretrained`` directory (config.json + model.safetensors) and
``training.json`` with the settings and the held-out perplexity.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch


def corpus_bytes() -> torch.Tensor:
    import pydoc_data.topics as topics

    text = "\n\n".join(topics.topics[k] for k in sorted(topics.topics))
    return torch.tensor(list(text.encode("utf-8")), dtype=torch.long)


def split(data: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    cut = int(len(data) * 0.9)
    return data[:cut], data[cut:]


def build_model(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=256, hidden_size=128, intermediate_size=352, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      rope_theta=10000.0, tie_word_embeddings=False, bos_token_id=None, eos_token_id=None,
                      pad_token_id=None)
    return LlamaForCausalLM(cfg)


@torch.no_grad()
def perplexity(model, data: torch.Tensor, seq_len: int = 128, max_windows: int | None = None) -> float:
    """Per-byte perplexity over non-overlapping windows of ``data``."""
    model.eval()
    n = (len(data) - 1) // seq_len
    if max_windows:
        n = min(n, max_windows)
    total, count = 0.0, 0
    for start in range(0, n, 32):
        idx = torch.arange(start, min(start + 32, n))
        x = torch.stack([data[i * seq_len : i * seq_len + seq_len] for i in idx.tolist()])
        y = torch.stack([data[i * seq_len + 1 : i * seq_len + seq_len + 1] for i in idx.tolist()])
        logits = model(input_ids=x, use_cache=False).logits
        total += torch.nn.functional.cross_entropy(logits.reshape(-1, 256), y.reshape(-1), reduction="sum").item()
        count += y.numel()
    return math.exp(total / count)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="secateurs/testing/assets/tiny-llama-pydoc")
    ap.add_argument("--steps", type=int, default=2500)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train, held_out = split(corpus_bytes())
    model = build_model(args.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.05)
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.time()
    model.train()
    for step in range(args.steps):
        starts = torch.randint(0, len(train) - args.seq_len - 1, (args.batch,), generator=gen)
        x = torch.stack([train[s : s + args.seq_len] for s in starts.tolist()])
        y = torch.stack([train[s + 1 : s + args.seq_len + 1] for s in starts.tolist()])
        loss = torch.nn.functional.cross_entropy(model(input_ids=x, use_cache=False).logits.reshape(-1, 256), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 250 == 0 or step == args.steps - 1:
            print(f"step {step:5d} loss {loss.item():.3f} ({time.time() - t0:.0f}s)", flush=True)
    ppl = perplexity(model, held_out)
    print(f"held-out per-byte perplexity {ppl:.3f}")
    out = Path(args.out)
    model.save_pretrained(out)
    info = {**vars(args), "held_out_perplexity": ppl, "train_bytes": len(train), "held_out_bytes": len(held_out),
            "seconds": round(time.time() - t0), "torch": torch.__version__, "data": "pydoc_data.topics, UTF-8 bytes"}
    (out / "training.json").write_text(json.dumps(info, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
