"""Held-out perplexity of the committed tiny Llama after structured pruning: secateurs vs Torch-Pruning.

    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/bench_llm.py [--quick] [--tp-timeout 240]

Model: ``secateurs/testing/assets/tiny-llama-pydoc`` (byte-level Llama, 4 layers, GQA; see its README).
Perplexity is per byte over the whole held-out split (last 10% of ``pydoc_data.topics``), before any
fine-tuning. Calibration: 8 batches of 8 x 128 bytes from the training split (activation criteria
use the memory-bounded sequential mode, ``CalibrationData(..., sequential=True)``).

Settings (``ratio`` is the fraction removed, ``local`` scope, uniform across layers):
- width r, heads+FFN: FFN neurons (``channels`` with the embeddings ignored) and attention heads —
  whole KV groups (``heads``) when r x kv_heads is a whole number, else query heads within every KV
  group (``query_heads``), so the head fraction is as close to r as whole heads allow;
- width r, +hidden: the same plus the hidden size (``channels`` everywhere, ``round_to=8``);
- depth 25%: one of the four decoder layers dropped (``drop_layers=1``).
Each width setting runs every criterion (l2, wanda, fluctuation, taylor, activation) without
compensation and, when the library has it, with ``compensate="bias"`` and ``"lstsq"``.
Torch-Pruning runs in a subprocess per setting (``tp_llm_worker.py``) under ``--tp-timeout``.
Writes ``bench/results/llm.{md,json}`` and prints the Markdown table. ``--parts depth --reuse
bench/results/llm.json`` reruns only the named parts and keeps the others from an earlier run.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import secateurs as sc
from secateurs.calibration import CalibrationData
from secateurs.integrations.hf import non_ffn_modules
from secateurs.testing.lm import (
    held_out_bytes,
    load_tiny_lm,
    perplexity,
    token_batches,
    train_bytes,
    unigram_perplexity,
)

CRITERIA = ("l2", "wanda", "fluctuation", "taylor", "activation")
COMPENSATION = ("bias", "lstsq")
LAYER_CRITERIA = ("block_influence", "angular")
ROOT = Path(__file__).resolve().parent
PARTS = ("width", "depth", "tp")


def lm_loss(output: Any, batch: dict[str, Any]) -> torch.Tensor:
    logits, ids = output.logits, batch["input_ids"]
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


def features() -> dict[str, bool]:
    params = inspect.signature(sc.prune).parameters
    return {"compensate": "compensate" in params, "drop_layers": "drop_layers" in params}


def head_ratio(model: Any, r: float) -> dict[str, float]:
    kv = model.config.num_key_value_heads
    return {"heads": r} if abs(r * kv - round(r * kv)) < 1e-9 else {"query_heads": r}


def width_settings(model: Any, ratios: list[float]) -> list[dict[str, Any]]:
    out = []
    for r in ratios:
        heads = head_ratio(model, r)
        out.append({"name": f"width {r:.0%} FFN only", "ratio": {"channels": r}, "ignore": non_ffn_modules(model),
                    "round_to": 1})
        out.append({"name": f"width {r:.0%} heads+FFN", "ratio": {**heads, "channels": r},
                    "ignore": non_ffn_modules(model), "round_to": 1})
        out.append({"name": f"width {r:.0%} heads+FFN+hidden", "ratio": {**heads, "channels": r},
                    "ignore": None, "round_to": 8})
    return out


def run_secateurs(base: Any, setting: dict[str, Any], criterion: str, compensate: str | None,
                  calib: list[dict[str, Any]]) -> dict[str, Any]:
    model = copy.deepcopy(base)
    kwargs: dict[str, Any] = {"ratio": setting["ratio"], "importance": criterion, "round_to": setting["round_to"]}
    if setting["ignore"]:
        kwargs["ignore"] = setting["ignore"]
    if criterion == "taylor":
        kwargs.update(calibration=calib, loss_fn=lm_loss)
    elif criterion != "l2":
        kwargs["calibration"] = CalibrationData(calib, sequential=True)
    if compensate:
        kwargs["compensate"] = compensate
        kwargs.setdefault("calibration", CalibrationData(calib, sequential=True))
    t0 = time.time()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = sc.prune(model, calib[0], **kwargs)
    rec = {"seconds": round(time.time() - t0, 2), "params_ratio": report.params_ratio,
           "widths": widths(model), "warnings": sorted({str(w.message)[:200] for w in caught})}
    rec["perplexity"] = perplexity(model, held_out_bytes())
    return rec


def run_depth(base: Any, layer_importance: str, calib: list[dict[str, Any]]) -> dict[str, Any]:
    model = copy.deepcopy(base)
    t0 = time.time()
    report = sc.prune(model, calib[0], drop_layers=1, layer_importance=layer_importance,
                      calibration=CalibrationData(calib, sequential=True))
    return {"seconds": round(time.time() - t0, 2), "params_ratio": report.params_ratio, "widths": widths(model),
            "perplexity": perplexity(model, held_out_bytes())}


def widths(model: Any) -> dict[str, int]:
    c = model.config
    return {"layers": len(model.model.layers), "hidden": int(model.model.embed_tokens.weight.shape[1]),
            "heads": int(model.model.layers[0].self_attn.q_proj.out_features // c.head_dim),
            "kv_heads": int(model.model.layers[0].self_attn.k_proj.out_features // c.head_dim),
            "ffn": int(model.model.layers[0].mlp.down_proj.in_features)}


def run_tp(ratio: float, mode: str, importance: str, timeout: float, as_example: bool = False) -> dict[str, Any]:
    """One Torch-Pruning setting in its own process; a hang is killed and its stack traces kept."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, str(ROOT / "tp_llm_worker.py"), "--ratio", str(ratio), "--mode", mode,
               "--importance", importance, "--dump-after", str(max(timeout - 15, 5)), "--out", str(out)]
        cmd += ["--as-example"] if as_example else []
        t0 = time.time()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=os.environ.copy())
        except subprocess.TimeoutExpired as exc:
            err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
            return {"status": f"timeout after {timeout:.0f}s", "stage": last_stage(err), "trace": stack_tail(err)}
        if out.exists():
            return {"status": "ok", **json.loads(out.read_text()), "wall": round(time.time() - t0, 1)}
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        return {"status": f"error (exit {proc.returncode})", "stage": last_stage(proc.stderr),
                "error": lines[-1] if lines else "", "trace": stack_tail(proc.stderr)}


def last_stage(stderr: str) -> str:
    stages = [ln.split("stage:", 1)[1].strip() for ln in stderr.splitlines() if "[tp-worker] stage:" in ln]
    return stages[-1] if stages else "start-up"


def stack_tail(stderr: str, n: int = 14) -> list[str]:
    """The innermost frames of the first traceback printed (faulthandler dump or exception)."""
    lines = stderr.splitlines()
    if any(ln.startswith("Traceback") for ln in lines):  # an exception: innermost frames are last
        return lines[-n:]
    start = next((i for i, ln in enumerate(lines) if ln.startswith(("Thread", "Current thread", "Traceback"))), None)
    if start is None:
        return lines[-n:]
    block = []
    for ln in lines[start:]:
        if block and not ln.startswith((" ", "\t")) and not ln.startswith(("Thread", "Current thread", "Traceback")):
            block.append(ln)
            break
        block.append(ln)
    return block[: n + 2]


def fmt(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.3f}" if x < 100 else f"{x:.4g}"


def width_part(base: Any, args: argparse.Namespace, calib: list[dict[str, Any]], have: dict[str, bool]) -> list[Any]:
    rows = []
    for setting in width_settings(base, args.ratios):
        if args.settings and not any(k in setting["name"] for k in args.settings):
            continue
        for crit in args.criteria:
            row: dict[str, Any] = {"setting": setting["name"], "criterion": crit}
            for comp in (None, *COMPENSATION):
                key = comp or "none"
                if comp and not have["compensate"]:
                    row[key] = {"status": "n/a (not available)"}
                    continue
                try:
                    row[key] = {"status": "ok", **run_secateurs(base, setting, crit, comp, calib)}
                except Exception as exc:  # a benchmark row, not a crash
                    row[key] = {"status": f"error: {type(exc).__name__}: {str(exc)[:300]}"}
                print(f"{setting['name']:28s} {crit:12s} {key:6s} {fmt(row[key].get('perplexity'))}  "
                      f"{row[key]['status'][:120]}", flush=True)
            rows.append(row)
    return rows


def depth_part(base: Any, calib: list[dict[str, Any]], have: dict[str, bool]) -> list[Any]:
    rows = []
    for li in LAYER_CRITERIA:
        if not have["drop_layers"]:
            rec: dict[str, Any] = {"status": "n/a (not available)"}
        else:
            try:
                rec = {"status": "ok", **run_depth(base, li, calib)}
            except Exception as exc:
                rec = {"status": f"error: {type(exc).__name__}: {str(exc)[:300]}"}
        rows.append({"setting": "depth 25% (1 of 4 layers)", "criterion": li, **rec})
        print(f"depth 25% {li:16s} {fmt(rec.get('perplexity'))}  {rec['status'][:120]}", flush=True)
    return rows


def tp_part(args: argparse.Namespace) -> list[Any]:
    rec = run_tp(args.ratios[0], "example", "l2", args.tp_timeout, as_example=True)
    rows = [{"ratio": args.ratios[0], "mode": "example, tensor input", **rec}]
    print(f"torch-pruning as in its example (tensor input): {rec['status']} stage={rec.get('stage', '')}", flush=True)
    for r in args.ratios:
        for mode in ("ffn", "heads_ffn", "example"):
            rec = run_tp(r, mode, "l2", args.tp_timeout)
            rows.append({"ratio": r, "mode": mode, **rec})
            print(f"torch-pruning {r:.0%} {mode:10s} {rec['status']} {fmt(rec.get('perplexity'))} "
                  f"stage={rec.get('stage', '')}", flush=True)
    return rows


def merge_rows(old: list[Any], new: list[Any], order: list[str]) -> list[Any]:
    """Rows of ``new`` replace those of ``old`` with the same setting and criterion; sorted by setting."""
    rows = {(r["setting"], r["criterion"]): r for r in old}
    rows.update({(r["setting"], r["criterion"]): r for r in new})
    rank = {name: i for i, name in enumerate(order)}
    return sorted(rows.values(), key=lambda r: (rank.get(r["setting"], len(rank)), CRITERIA.index(r["criterion"])
                                                if r["criterion"] in CRITERIA else len(CRITERIA)))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.2, 0.5])
    ap.add_argument("--criteria", nargs="+", default=list(CRITERIA))
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    ap.add_argument("--settings", nargs="+", help="only width settings whose name contains one of these")
    ap.add_argument("--reuse", help="results JSON whose parts not in --parts are kept (e.g. rerun only depth)")
    ap.add_argument("--tp-timeout", type=float, default=240)
    ap.add_argument("--no-tp", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "results"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t_start = time.time()
    base = load_tiny_lm()
    held, train = held_out_bytes(), train_bytes()
    calib = [{**b, "use_cache": False} for b in token_batches("train", batch_size=8, n_batches=8)]
    have = features()
    old: dict[str, Any] = json.loads(Path(args.reuse).read_text()) if args.reuse else {}
    results: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "threads": args.threads, "torch": torch.__version__},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "features": have,
        "unigram_perplexity": unigram_perplexity(train, held), "baseline": perplexity(base, held),
        "width": old.get("width", []), "depth": old.get("depth", []), "torch_pruning": old.get("torch_pruning", []),
        "part_seconds": old.get("part_seconds", {}),
    }
    print(f"baseline held-out perplexity {results['baseline']:.3f} (unigram {results['unigram_perplexity']:.3f})",
          flush=True)
    parts = [p for p in args.parts if not (p == "tp" and args.no_tp)]
    for part in parts:
        t0 = time.time()
        if part == "width":
            results["width"] = merge_rows(results["width"], width_part(base, args, calib, have),
                                          [x["name"] for x in width_settings(base, args.ratios)])
        elif part == "depth":
            results["depth"] = depth_part(base, calib, have)
        else:
            results["torch_pruning"] = tp_part(args)
        results["part_seconds"][part] = round(time.time() - t0)
    results["wall_seconds"] = sum(results["part_seconds"].values()) + round(time.time() - t_start) - sum(
        results["part_seconds"][p] for p in parts)
    from llm_table import markdown  # local import keeps --help fast

    text = markdown(results)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "llm.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out / "llm.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
