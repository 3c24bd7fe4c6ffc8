"""One tool on one model, in its own process (bench_vision.py runs it under a time limit).

Loads the shared base weights, prunes, checks, counts, saves the pruned model, and always writes
a JSON result, with the stage that failed when something did.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
import warnings
from typing import Any

import torch
from checks import masked_check
from vision_tools import PRUNERS, build_model, example_input, fresh_copy


def count(model: torch.nn.Module, x: torch.Tensor) -> tuple[int, int]:
    import secateurs as sc

    return sc.count(model, x)


def run_(res: dict[str, Any], tool: str, name: str, base: str, out_model: str, ratio: float) -> None:
    """Fill ``res`` as the stages pass, so a failure still shows how far it got."""
    res["stage"] = "load"
    model = build_model(name)
    model.load_state_dict(torch.load(base, weights_only=True))
    reference = fresh_copy(model)
    x = example_input()

    res["stage"] = "prune"
    pruned = PRUNERS[tool](model, x, ratio)
    res.update(seconds=pruned.seconds, notes=pruned.notes)
    model = pruned.model.eval()

    res["stage"] = "check"
    neutral = masked_check(reference, model, x)
    res["neutral_check"] = neutral
    res["check"] = pruned.verify(reference, x) if pruned.verify is not None else neutral
    if not neutral["message"].startswith("pruned model does not run"):
        res["stage"] = "count"
        try:
            res["macs"], res["params"] = count(model, x)
            res["counter"] = "secateurs.count (torch.export graph)"
        except Exception as exc:  # recorded, not fatal: params still counted directly
            res["count_error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            res["params"] = sum(p.numel() for p in model.parameters())
        res["stage"] = "save"
        torch.save(model, out_model)
        res["ok"] = True
        res["stage"] = "done"
    else:
        res["error"] = neutral["message"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tool", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--base", required=True, help="state_dict of the shared unpruned weights")
    ap.add_argument("--out-model", required=True)
    ap.add_argument("--out-json", required=True)
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    res: dict[str, Any] = {"tool": args.tool, "model": args.model, "ok": False}
    try:
        run_(res, args.tool, args.model, args.base, args.out_model, args.ratio)
    except Exception as exc:
        res.update(error=f"{type(exc).__name__}: {str(exc)[:500]}", traceback=traceback.format_exc()[-3000:])
    with open(args.out_json, "w") as f:
        json.dump(res, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
