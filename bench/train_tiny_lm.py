"""Train the tiny byte-level Llama used by LLM pruning tests and benchmarks (reproducible, CPU).

Data: Python's own documentation topics (``pydoc_data.topics``, ~466 KB of English text that
ships with CPython), sorted by topic name, encoded as UTF-8 bytes (vocabulary = 256 byte values).
The last 10% of the byte stream is held out for perplexity; the first 90% is for training and
calibration (``secateurs.testing.lm`` holds the data helpers, so tests and benchmarks use the same split).

    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/train_tiny_lm.py --out secateurs/testing/assets/tiny-llama-pydoc

Writes a Hugging Face ``save_pretrained`` directory (config.json + model.safetensors) and
``training.json`` with the settings, losses and perplexities (train subset, held-out, unigram baseline).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from secateurs.testing.lm import (
    SEQ_LEN,
    VOCAB,
    corpus_bytes,
    corpus_sha256,
    perplexity,
    split_bytes,
    unigram_perplexity,
)


def build_model(seed: int, hidden: int, ffn: int, layers: int, heads: int, kv_heads: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=kv_heads,
                      head_dim=hidden // heads, max_position_embeddings=2 * SEQ_LEN,
                      rope_theta=10000.0, tie_word_embeddings=False, bos_token_id=None, eos_token_id=None,
                      pad_token_id=None)
    return LlamaForCausalLM(cfg)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="secateurs/testing/assets/tiny-llama-pydoc")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=SEQ_LEN)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--hidden", type=int, default=120)
    ap.add_argument("--ffn", type=int, default=320)
    ap.add_argument("--heads", type=int, default=10)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--eval-every", type=int, default=100)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    train, held_out = split_bytes(corpus_bytes())
    model = build_model(args.seed, args.hidden, args.ffn, args.layers, args.heads, args.kv_heads)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{n_params} parameters; {len(train)} train bytes, {len(held_out)} held-out bytes", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.05)
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.time()
    model.train()
    for step in range(args.steps):
        starts = torch.randint(0, len(train) - args.seq_len - 1, (args.batch,), generator=gen)
        x = torch.stack([train[s : s + args.seq_len] for s in starts.tolist()])
        y = torch.stack([train[s + 1 : s + args.seq_len + 1] for s in starts.tolist()])
        logits = model(input_ids=x, use_cache=False).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == args.steps - 1:
            line = f"step {step:5d} loss {loss.item():.3f} ({time.time() - t0:.0f}s)"
            if step % args.eval_every == 0 and step:
                line += f" held-out ppl (64 windows) {perplexity(model, held_out, max_windows=64):.3f}"
                model.train()
            print(line, flush=True)
    train_seconds = time.time() - t0
    n_eval = (len(held_out) - 1) // args.seq_len
    train_ppl = perplexity(model, train, max_windows=n_eval)  # the first windows of train, as many as held-out has
    held_ppl = perplexity(model, held_out)
    base = unigram_perplexity(train, held_out)
    print(f"train ppl {train_ppl:.3f} (loss {math.log(train_ppl):.4f}), held-out ppl {held_ppl:.3f} "
          f"(loss {math.log(held_ppl):.4f}), unigram baseline {base:.3f}; trained in {train_seconds:.0f}s", flush=True)
    out = Path(args.out)
    model.save_pretrained(out)
    info = {**vars(args), "parameters": n_params, "train_perplexity": train_ppl, "train_loss": math.log(train_ppl),
            "held_out_perplexity": held_ppl, "held_out_loss": math.log(held_ppl), "unigram_perplexity": base,
            "train_bytes": len(train), "held_out_bytes": len(held_out), "train_seconds": round(train_seconds),
            "torch": torch.__version__, "data": "pydoc_data.topics sorted by name, UTF-8 bytes",
            "corpus_sha256": corpus_sha256()}
    (out / "training.json").write_text(json.dumps(info, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
