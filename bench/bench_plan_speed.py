"""plan+apply time, secateurs vs Torch-Pruning, interleaved in one process (issue #11's measurement).

    PYTHONPATH=. python bench/bench_plan_speed.py                 # 5 models, 7 rounds each
    PYTHONPATH=. python bench/bench_plan_speed.py --models resnet50 --rounds 3

Per model: random weights; each round prunes a fresh deep copy with each tool (order alternating), timing
``sc.plan`` + ``sc.apply`` and Torch-Pruning's ``BasePruner`` + ``step()`` as its torchvision example does
(`vision_tools.py`). The first round of each tool is reported apart (``first``: it pays one-time costs: for
secateurs the torch.export capture, which later rounds reuse from the per-process analysis cache since the
copies share one architecture; for Torch-Pruning its dependency-graph trace, which it redoes every time).
``median`` is over the remaining rounds. Prints a Markdown table with ratios (secateurs / Torch-Pruning) and
the thread count and load average; run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vision_tools import PRUNERS, build_model, example_input, randomize_constants_  # noqa: E402

MODELS = ("resnet50", "mobilenet_v2", "vit_b_16", "convnext_tiny", "regnet_y_400mf")


def run(name: str, rounds: int, ratio: float) -> dict[str, object]:
    torch.manual_seed(0)
    base = randomize_constants_(build_model(name)).eval()
    x = example_input()
    times: dict[str, list[float]] = {"secateurs": [], "torch_pruning": []}
    for r in range(rounds):
        order = ("secateurs", "torch_pruning") if r % 2 == 0 else ("torch_pruning", "secateurs")
        for tool in order:
            model = copy.deepcopy(base)
            times[tool].append(PRUNERS[tool](model, x, ratio).seconds)
    out: dict[str, object] = {"model": name}
    for tool, ts in times.items():
        out[f"{tool}_first"] = ts[0]
        out[f"{tool}_median"] = statistics.median(ts[1:]) if len(ts) > 1 else ts[0]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()
    rows = [run(name, args.rounds, args.ratio) for name in args.models]
    print(f"threads={args.threads} rounds={args.rounds} ratio={args.ratio} load_start={load[0]:.2f} "
          f"load_end={os.getloadavg()[0]:.2f} torch={torch.__version__}")
    print("| model | secateurs first s | TP first s | secateurs median s | TP median s | median ratio |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        ratio = float(r["secateurs_median"]) / max(float(r["torch_pruning_median"]), 1e-9)
        print(f"| {r['model']} | {r['secateurs_first']:.2f} | {r['torch_pruning_first']:.2f} | "
              f"{r['secateurs_median']:.2f} | {r['torch_pruning_median']:.2f} | {ratio:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
