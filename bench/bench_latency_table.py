"""Latency target on resnet50 (issue #16): per-layer lookup tables vs bisection on timed pruned copies.

    PYTHONPATH=. python bench/bench_latency_table.py [--fraction 0.5] [--size 224] [--threads 1]

Plans ``latency=LatencyTarget(fraction, method="table")`` (table built, then planned from it; the table is
timed layer by layer once and saved to bench/results/cache/latency_table_resnet50.json, so the line
"table reused" shows planning from an existing table) and ``method="measure"`` (bisection), each from the same
random-init torchvision resnet50, and prints the wall time of each and the measured kept latency of the
chosen plans (and, for the table, its predicted value and error). Run it on a quiet machine (uptime load < 1.5).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
import torchvision

import secateurs as sc
from secateurs.targets import LatencyTarget


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fraction", type=float, default=0.5)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    model, x = torchvision.models.resnet50().eval(), torch.randn(1, 3, args.size, args.size)
    cache = Path("bench/results/cache")
    cache.mkdir(parents=True, exist_ok=True)
    table = cache / f"latency_table_resnet50_{args.size}_t{args.threads}.json"
    table.unlink(missing_ok=True)
    print(f"load at start {os.getloadavg()[0]:.1f}, torch {torch.__version__}, threads {args.threads}", flush=True)
    for name, kw in (("table (built now)", {"method": "table", "table": str(table)}),
                     ("table reused", {"method": "table", "table": str(table)}),
                     ("bisection", {"method": "measure"})):
        t = time.perf_counter()
        plan = sc.plan(model, x, latency=LatencyTarget(args.fraction, threads=args.threads, repeats=args.repeats, **kw))
        secs = time.perf_counter() - t
        lat = plan.settings["latency"]
        got = plan.settings["achieved"]["latency"]
        extra = (f", predicted {lat['predicted']:.3f}, error {lat['error']:+.1%}, corrections {lat['corrections']}, "
                 f"layers timed {lat['layers_timed']}, "
                 f"phases {', '.join(f'{k} {v:.0f} s' for k, v in lat['seconds'].items())}" if lat.get("method") == "table"
                 else f", probes {len(lat['probes'])}")
        print(f"{name}: {secs:.0f} s, measured kept latency {got:.3f} (target {args.fraction}; "
              f"{lat['pruned_ms']:.1f} ms vs {lat['reference_ms']:.1f} ms){extra}, load {os.getloadavg()[0]:.1f}",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
