"""Torch-Pruning 1.6.1 on the tiny Llama, one setting per process (run by bench_llm.py under a timeout).

    PYTHONPATH=. python bench/tp_llm_worker.py --ratio 0.2 --mode example --out result.json

Follows Torch-Pruning's own LLM example (examples/LLMs/prune_llm.py): ``MetaPruner`` with
``GroupMagnitudeImportance(p=2, group_reduction="mean")`` (or ``TaylorImportance``), local, one step,
``num_heads={q_proj: heads, k_proj: kv_heads, v_proj: kv_heads}``, ``prune_num_heads=True``,
``prune_head_dims=False``, ``head_pruning_ratio=ratio``, ``ignored_layers=[lm_head]``, ``round_to=4``,
then the attribute and config fixes that example makes by hand. ``--mode example`` prunes what the
example prunes (hidden size, heads, FFN); ``--mode heads_ffn`` also ignores the embeddings, norms and
the layers that write the residual stream (o_proj, down_proj), so only heads and FFN neurons go;
``--mode ffn`` also ignores every attention projection and turns head pruning off (FFN neurons only).
Each stage is printed to stderr before it starts, and a traceback of every thread is dumped
shortly before the parent's timeout, so a hang shows where it is stuck.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import sys
import time
from importlib.metadata import version
from pathlib import Path

import torch
import torch.nn.functional as F


def stage(name: str) -> None:
    print(f"[tp-worker] stage: {name}", file=sys.stderr, flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ratio", type=float, required=True)
    ap.add_argument("--mode", choices=("example", "heads_ffn", "ffn"), default="example")
    ap.add_argument("--importance", choices=("l2", "taylor"), default="l2")
    ap.add_argument("--dump-after", type=float, default=0, help="dump every thread's traceback after N s")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--as-example", action="store_true",
                    help="pass the token tensor as example_inputs exactly as the example does (cache on)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.dump_after > 0:
        faulthandler.dump_traceback_later(args.dump_after, exit=False)
    import torch_pruning as tp

    from secateurs.testing.lm import held_out_bytes, load_tiny_lm, perplexity, token_batches

    result: dict = {"ratio": args.ratio, "mode": args.mode, "importance": args.importance,
                    "torch_pruning": version("torch-pruning")}
    model = load_tiny_lm()
    cfg = model.config
    params_before = sum(p.numel() for p in model.parameters())
    calib = token_batches("train", batch_size=8, n_batches=8)
    # the example passes a bare token tensor; under transformers 5 the output then carries a DynamicCache
    # and the tracer fails (AttributeError: 'tuple' object has no attribute 'grad_fn'), so by default the
    # cache is turned off the way HF allows: keyword inputs with use_cache=False
    ids = calib[0]["input_ids"][:1]
    example = ids if args.as_example else {"input_ids": ids, "use_cache": False}
    result["example_inputs"] = "token tensor (as the example)" if args.as_example else "dict, use_cache=False"
    num_heads, ignored = {}, [model.lm_head]
    for name, m in model.named_modules():
        if name.endswith("self_attn"):
            num_heads[m.q_proj] = cfg.num_attention_heads
            num_heads[m.k_proj] = cfg.num_key_value_heads
            num_heads[m.v_proj] = cfg.num_key_value_heads
            if args.mode == "heads_ffn":
                ignored.append(m.o_proj)
            if args.mode == "ffn":
                ignored += [m.q_proj, m.k_proj, m.v_proj, m.o_proj]
        if name.endswith("mlp") and args.mode != "example":
            ignored.append(m.down_proj)
    if args.mode != "example":
        ignored += [model.model.embed_tokens, model.model.norm]
        ignored += [m for n, m in model.named_modules() if n.endswith("layernorm")]
    if args.importance == "l2":
        importance = tp.importance.GroupMagnitudeImportance(p=2, group_reduction="mean")
    else:
        importance = tp.importance.GroupTaylorImportance()
    t0 = time.time()
    stage("MetaPruner constructor (traces the model and builds the dependency graph)")
    pruner = tp.pruner.MetaPruner(
        model, example_inputs=example, importance=importance, global_pruning=False, pruning_ratio=args.ratio,
        ignored_layers=ignored, num_heads=num_heads, prune_num_heads=args.mode != "ffn", prune_head_dims=False,
        head_pruning_ratio=args.ratio, round_to=4,
    )
    if args.importance == "taylor":
        stage("Taylor gradients")
        model.zero_grad()
        for b in calib:
            ids = b["input_ids"]
            logits = model(input_ids=ids, use_cache=False).logits
            F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1)).backward()
    stage("pruner.step()")
    for group in pruner.step(interactive=True):
        group.prune()
    stage("attribute and config fixes (as the example does by hand)")
    cfg.hidden_size = model.lm_head.in_features
    for name, m in model.named_modules():
        if name.endswith("self_attn"):
            heads = m.q_proj.out_features // m.head_dim
            kv = m.k_proj.out_features // m.head_dim
            m.num_key_value_groups = heads // kv
            cfg.num_attention_heads, cfg.num_key_value_heads = heads, kv
        elif name.endswith("mlp"):
            m.hidden_size = m.gate_proj.in_features
            m.intermediate_size = m.gate_proj.out_features
            cfg.intermediate_size = m.gate_proj.out_features
    result["seconds"] = round(time.time() - t0, 2)
    result["params_ratio"] = sum(p.numel() for p in model.parameters()) / params_before
    result["widths"] = {"hidden": cfg.hidden_size, "heads": cfg.num_attention_heads, "kv_heads": cfg.num_key_value_heads,
                        "ffn": cfg.intermediate_size}
    stage("held-out perplexity")
    model.zero_grad(set_to_none=True)
    result["perplexity"] = perplexity(model, held_out_bytes())
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    stage("done")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
