"""Torch-Pruning 1.6.1 on all-MiniLM-L6-v2, run in its own process by bench_minilm.py (not a test module).

    python bench/minilm_tp_worker.py CONFIG IMPORTANCE OUT_PREFIX --heldout N --calib N --threads T

As Torch-Pruning's own HF BERT example (examples/transformers/prune_hf_bert.py) does: every
BertSelfAttention's query/key/value go in ``num_heads``; whole heads are removed (``prune_num_heads``,
``head_pruning_ratio=0.25``, head dims kept) and FFN neurons at ``pruning_ratio``; the hidden size is
kept by ignoring every Linear that writes the residual stream (attention output and FFN output dense).
After ``step()`` the attention attributes are fixed by hand, as the example does. Writes
OUT_PREFIX.json (timing, params, error) and OUT_PREFIX.npy (held-out embeddings) when it succeeds.
"""

from __future__ import annotations

import argparse
import json
import time
import traceback

import numpy as np
import torch
from minilm_tools import (
    CONFIGS,
    batches,
    embed,
    evaluation_batches,
    infonce,
    load_minilm,
    pair_batches,
    param_count,
    sentences,
)


def prune(model, tokenizer, config: str, importance: str, calib: int) -> float:
    import torch_pruning as tp
    from transformers.models.bert.modeling_bert import BertSelfAttention

    ratio = CONFIGS[config]
    example = batches(tokenizer, sentences("train", 4), 4)[0]
    num_heads, ignored = {}, []
    for m in model.modules():
        if isinstance(m, BertSelfAttention):
            for lin in (m.query, m.key, m.value):
                num_heads[lin] = m.num_attention_heads
    for layer in model.encoder.layer:
        ignored += [layer.attention.output.dense, layer.output.dense]
    imp = (tp.importance.GroupMagnitudeImportance(p=2) if importance == "l2"
           else tp.importance.GroupTaylorImportance())
    start = time.perf_counter()
    pruner = tp.pruner.BasePruner(
        model, example, importance=imp, pruning_ratio=ratio["channels"], global_pruning=False,
        ignored_layers=ignored, num_heads=num_heads, prune_num_heads=True, prune_head_dims=False,
        head_pruning_ratio=ratio["heads"], output_transform=lambda out: out.last_hidden_state.sum(),
    )
    if importance == "taylor":
        model.zero_grad()
        for b in pair_batches(tokenizer, sentences("train", calib * 16), 16):
            infonce(model(**b), b).backward()
    pruner.step()
    for m in model.modules():
        if isinstance(m, BertSelfAttention):
            m.num_attention_heads = pruner.num_heads[m.query]
            m.attention_head_size = m.query.out_features // m.num_attention_heads
            m.all_head_size = m.query.out_features
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("config", choices=sorted(CONFIGS))
    ap.add_argument("importance", choices=["l2", "taylor"])
    ap.add_argument("out")
    ap.add_argument("--heldout", type=int, default=None)
    ap.add_argument("--calib", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model, tokenizer = load_minilm()
    report: dict = {"tool": "torch_pruning", "config": a.config, "importance": a.importance}
    try:
        report["prune_s"] = prune(model, tokenizer, a.config, a.importance, a.calib)
        layer = model.encoder.layer[0]
        report["params"] = param_count(model)
        report["heads"] = layer.attention.self.num_attention_heads
        report["ffn"] = layer.intermediate.dense.out_features
        emb = embed(model, evaluation_batches(tokenizer, a.heldout))
        np.save(a.out + ".npy", emb.numpy())
        report["ok"] = True
    except Exception as exc:  # noqa: BLE001 - every failure becomes a table row
        report["ok"] = False
        report["error"] = f"{type(exc).__name__}: {exc}"[:500]
        report["traceback"] = traceback.format_exc()[-3000:]
    with open(a.out + ".json", "w") as f:
        json.dump(report, f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
