"""The LLM methods of issue #13 against their naive counterparts at equal size, on the committed tiny Llama.

    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/bench_llm_methods.py [--parts rotate depth shear kl] [--quick]

Model and metric as bench_llm.py: ``secateurs/testing/assets/tiny-llama-pydoc`` (4 layers, hidden 120, FFN 320,
10 query / 2 KV heads), per-byte perplexity over the whole held-out split; calibration 8 batches of 8 x 128 bytes of
the training split. Parts:

- rotate: SliceGPT (``rotate=True``) vs plain hidden-size pruning at the same width (``ratio={"hidden": r}``,
  ``round_to=10`` so the config stays stock), each with l2 scores and no compensation, and with the defaults
  (``auto``: wanda + lstsq for the other groups' compensation); plus the rotation alone (its exactness).
- depth: LaCo (``merge_layers=n``) vs dropping ``n`` layers (block influence, angular).
- shear: ``sc.shear`` to L3 h80 q8/kv2 ffn160 for S steps then R steps of fine-tuning, vs one-shot pruning to the
  same shape (``drop_layers=1`` + ``ratio={"hidden": 1/3, "ffn": 0.5, "query_heads": 0.2}``, defaults) then S + R
  steps of the same fine-tuning (AdamW, next-byte loss, batches of 8 x 128 training bytes, same order).
- kl: the one-shot model above recovered by distillation from the unpruned model for K steps with forward KL
  (``distill_loss="kl"``) and with reverse KL (``"reverse_kl"``), same optimizer and data.

Writes bench/results/llm_methods.{md,json} and prints the tables.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import secateurs as sc
from secateurs.testing.lm import held_out_bytes, load_tiny_lm, perplexity, token_batches

ROOT = Path(__file__).resolve().parent
PARTS = ("rotate", "depth", "shear", "kl")
SHEAR_TARGET = {"num_hidden_layers": 3, "hidden_size": 80, "intermediate_size": 160, "num_attention_heads": 8,
                "num_key_value_heads": 2}
ONE_SHOT = {"drop_layers": 1, "ratio": {"hidden": 1 / 3, "ffn": 0.5, "query_heads": 0.2}, "round_to": 1}


def lm_loss(output: Any, batch: Any) -> torch.Tensor:
    logits, ids = output.logits, batch["input_ids"]
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


def widths(model: Any) -> str:
    c = model.config
    return (f"L{c.num_hidden_layers} h{c.hidden_size} q{c.num_attention_heads}/kv{c.num_key_value_heads} "
            f"ffn{c.intermediate_size}")


def unseen_bytes() -> torch.Tensor:
    """A second test text the settings were never chosen on: the docstrings of a few standard-library modules
    (another register of English than the documentation topics the model was trained on), as UTF-8 bytes."""
    import importlib
    import inspect

    names = ("argparse", "collections", "json", "textwrap", "string", "functools", "itertools", "pathlib")
    text = "\n\n".join(inspect.getdoc(getattr(importlib.import_module(n), a)) or "" for n in names
                       for a in sorted(dir(importlib.import_module(n))) if not a.startswith("_")
                       and callable(getattr(importlib.import_module(n), a)))
    return torch.frombuffer(bytearray(text.encode("utf-8")), dtype=torch.uint8).to(torch.long)


def measure(model: Any, base_params: int) -> dict[str, Any]:
    return {"perplexity": perplexity(model, held_out_bytes()), "unseen_perplexity": perplexity(model, unseen_bytes()),
            "widths": widths(model), "params": sum(p.numel() for p in model.parameters()) / base_params}


def quiet_prune(model: Any, x: Any, **kw: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sc.prune(model, x, **kw)


def rotate_part(base: Any, calib: list[Any], n: int, ratios: list[float]) -> list[dict[str, Any]]:
    rows = []
    x = calib[0]
    model = copy.deepcopy(base)
    rep = quiet_prune(model, x, ratio={"hidden": 0.0}, rotate=True, calibration=calib, importance="l2", compensate=None)
    rows.append({"setting": "rotation alone", "method": "rotate", "verified": rep.verification.message,
                 "exact_rel_error": rep.plan.settings["rotation"]["exact_rel_error"], **measure(model, n)})
    for r in ratios:
        for method, kw in (("plain, l2", {"importance": "l2", "compensate": None}),
                           ("plain, defaults (wanda + lstsq)", {"calibration": calib}),
                           ("rotate, l2", {"rotate": True, "calibration": calib, "importance": "l2", "compensate": None}),
                           ("rotate, defaults (+ lstsq)", {"rotate": True, "calibration": calib}),
                           ("rotate per layer, l2", {"rotate": True, "rotate_per_layer": True, "calibration": calib,
                                                     "importance": "l2", "compensate": None})):
            model = copy.deepcopy(base)
            t0 = time.time()
            rep = quiet_prune(model, x, ratio={"hidden": r}, round_to=10, **kw)
            row = {"setting": f"hidden {r:.0%}", "method": method, "seconds": round(time.time() - t0, 1),
                   "verified": rep.verification.message, **measure(model, n)}
            if "rotation" in rep.plan.settings:
                row["kept_variance"] = rep.plan.settings["rotation"]["kept_variance"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def depth_part(base: Any, calib: list[Any], n: int, counts: list[int]) -> list[dict[str, Any]]:
    rows = []
    x = calib[0]
    for k in counts:
        for method, kw in (("drop, block_influence", {"drop_layers": k}),
                           ("drop, angular", {"drop_layers": k, "layer_importance": "angular"}),
                           ("LaCo merge", {"merge_layers": k})):
            model = copy.deepcopy(base)
            rep = quiet_prune(model, x, calibration=calib, **kw)
            removed = rep.plan.merged_layers or rep.plan.dropped_layers
            row = {"setting": f"{k} of 4 layers", "method": method, "layers": removed,
                   "verified": rep.verification.message, **measure(model, n)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def finetune(model: Any, data: list[Any], steps: int, lr: float, teacher: Any = None, loss: str = "kl") -> list[float]:
    if steps <= 0:
        return []
    batches = [(b, None if teacher is not None else b) for b in data]
    kw: dict[str, Any] = {"distill_loss": loss, "temperature": 1.0} if teacher is not None else {}
    result = sc.recover(model, batches, teacher=teacher, loss=None if teacher is not None else lm_loss, steps=steps,
                        seed=0, progress=False, max_grad_norm=1.0, amp=False,
                        optimizer=lambda p: torch.optim.AdamW(p, lr=lr, weight_decay=0.0), **kw)
    model.eval()
    return result.losses


def one_shot(base: Any, calib: list[Any], **kw: Any) -> Any:
    model = copy.deepcopy(base)
    quiet_prune(model, calib[0], calibration=calib, **ONE_SHOT, **kw)
    return model


def shear_part(base: Any, calib: list[Any], train: list[Any], n: int, s_steps: int, r_steps: int,
               lr: float) -> list[dict[str, Any]]:
    rows = []
    for name, kw in (("one-shot (defaults: wanda + lstsq)", {}),
                     ("one-shot (l2)", {"importance": "l2", "compensate": None})):
        model = one_shot(base, calib, **kw)
        rows.append({"setting": "before fine-tuning", "method": name, **measure(model, n)})
        t0 = time.time()
        losses = finetune(model, train, r_steps, lr)
        rows.append({"setting": f"{r_steps} fine-tuning steps", "method": name, "losses": losses, **measure(model, n)})
        losses += finetune(model, train[r_steps % len(train):] + train[:r_steps % len(train)], s_steps, lr)
        rows.append({"setting": f"{s_steps + r_steps} fine-tuning steps", "method": name,
                     "seconds": round(time.time() - t0), "losses": losses, **measure(model, n)})
        print(json.dumps(rows[-1])[:300], flush=True)
    model = copy.deepcopy(base)
    t0 = time.time()
    result = sc.shear(model, train, SHEAR_TARGET, steps=s_steps, lr=lr, log_every=10, progress=False)
    rows.append({"setting": "before fine-tuning", "method": f"shear ({s_steps} steps)",
                 "masked_rel_error": result.masked_rel_error, "history": result.history,
                 "seconds": round(time.time() - t0), **measure(model, n)})
    print(json.dumps({k: v for k, v in rows[-1].items() if k != "history"}), flush=True)
    t0 = time.time()
    losses = finetune(model, train[s_steps % len(train):] + train[: s_steps % len(train)], r_steps, lr)
    rows.append({"setting": f"{s_steps + r_steps} steps in all", "method": f"shear ({s_steps}) + fine-tuning "
                 f"({r_steps})", "seconds": round(time.time() - t0), "losses": losses, **measure(model, n)})
    print(json.dumps(rows[-1])[:300], flush=True)
    return rows


def kl_part(base: Any, calib: list[Any], train: list[Any], n: int, steps: int, lr: float) -> list[dict[str, Any]]:
    rows = []
    start = one_shot(base, calib)
    rows.append({"setting": "before distillation", "method": "one-shot (defaults)", **measure(start, n)})
    for loss in ("kl", "reverse_kl"):
        model = copy.deepcopy(start)
        t0 = time.time()
        losses = finetune(model, train, steps, lr, teacher=base, loss=loss)
        rows.append({"setting": f"{steps} distillation steps", "method": loss, "seconds": round(time.time() - t0),
                     "losses": losses, **measure(model, n), **teacher_gap(model, base)})
        print(json.dumps(rows[-1])[:300], flush=True)
    return rows


@torch.no_grad()
def teacher_gap(student: Any, teacher: Any) -> dict[str, float]:
    """Forward and reverse KL to the teacher, per byte, on the first 64 held-out windows."""
    from secateurs.recovery.distill import kd_loss, reverse_kd_loss
    from secateurs.testing.lm import windows

    x, _ = windows(held_out_bytes())
    fwd = rev = 0.0
    for i in range(0, 64, 16):
        s = student(input_ids=x[i:i + 16], use_cache=False).logits
        t = teacher(input_ids=x[i:i + 16], use_cache=False).logits
        fwd += float(kd_loss(s, t, 1.0)) / 4
        rev += float(reverse_kd_loss(s, t, 1.0)) / 4
    return {"forward_kl": fwd, "reverse_kl": rev}


def markdown(res: dict[str, Any]) -> str:
    out = [f"Unpruned held-out perplexity **{res['baseline']:.3f}** per byte.", ""]
    for part in PARTS:
        rows = res.get(part) or []
        if not rows:
            continue
        out += [f"### {part}", "", "| setting | method | widths | params kept | perplexity | unseen text | notes |",
                "|---|---|---|---|---|---|---|"]
        for r in rows:
            notes = []
            for key in ("kept_variance", "exact_rel_error", "masked_rel_error", "forward_kl", "reverse_kl"):
                if key in r:
                    notes.append(f"{key} {r[key]:.3g}")
            if "layers" in r:
                notes.append(f"removed {r['layers']}")
            ppl = r.get("perplexity")
            unseen = r.get("unseen_perplexity")
            out.append(f"| {r['setting']} | {r['method']} | {r.get('widths', '')} | {r.get('params', math.nan):.1%} | "
                       f"{ppl:.3f} | {'-' if unseen is None else f'{unseen:.3f}'} | {'; '.join(notes)} |")
        out.append("")
    m = res["machine"]
    out.append(f"Machine: {m['processor']}, {m['cpus']} CPUs (shared), 1 thread, torch {m['torch']}; {res['date']}; "
               f"wall {res['wall_seconds']} s (not a timing result).")
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    ap.add_argument("--quick", action="store_true", help="fewer steps (development)")
    ap.add_argument("--shear-steps", type=int, default=150)
    ap.add_argument("--recover-steps", type=int, default=150)
    ap.add_argument("--kl-steps", type=int, default=150)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--reuse", help="results JSON whose parts not rerun are kept")
    ap.add_argument("--out", default=str(ROOT / "results"))
    args = ap.parse_args()
    if args.quick:
        args.shear_steps = args.recover_steps = args.kl_steps = 10
    torch.set_num_threads(1)
    t_start = time.time()
    base = load_tiny_lm()
    n = sum(p.numel() for p in base.parameters())
    calib = [{**b, "use_cache": False} for b in token_batches("train", batch_size=8, n_batches=8)]
    g = torch.Generator().manual_seed(0)
    every = token_batches("train", batch_size=8)
    train = [every[int(i)] for i in torch.randperm(len(every), generator=g)]
    res: dict[str, Any] = json.loads(Path(args.reuse).read_text()) if args.reuse else {}
    res.update({"machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                            "cpus": os.cpu_count(), "torch": torch.__version__},
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "baseline": perplexity(base, held_out_bytes()),
                "settings": vars(args)})
    print(f"baseline {res['baseline']:.3f}", flush=True)
    for part in args.parts:
        if part == "rotate":
            res[part] = rotate_part(base, calib, n, [0.25, 0.5])
        elif part == "depth":
            res[part] = depth_part(base, calib, n, [1, 2])
        elif part == "shear":
            res[part] = shear_part(base, calib, train, n, args.shear_steps, args.recover_steps, args.lr)
        else:
            res[part] = kl_part(base, calib, train, n, args.kl_steps, args.lr)
    res["wall_seconds"] = round(time.time() - t_start)
    text = markdown(res)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "llm_methods.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    (out / "llm_methods.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
