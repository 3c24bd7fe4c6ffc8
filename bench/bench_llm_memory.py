"""Peak memory of the in-memory ``sc.prune`` on a slice of a Llama-3-8B-shaped bf16 model (random weights).

Each measurement runs in a child process: it builds the model (bench/llm_shapes.py), resets the kernel's
peak-RSS counter (/proc/self/clear_refs), prunes, and reports the peak RSS next to the weight bytes and the
RSS before pruning (weights + interpreter, torch, transformers). ``--code DIR`` runs the child against another
checkout (e.g. the integration branch) to compare before/after::

    PYTHONPATH=. python bench/bench_llm_memory.py --layers 8                       # this checkout
    PYTHONPATH=. python bench/bench_llm_memory.py --layers 8 --code /work/main     # another checkout
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def status() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in bytes."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux)


def child(args: argparse.Namespace) -> None:
    import gc

    import torch

    sys.path.insert(0, str(HERE))
    from llm_shapes import random_model

    import secateurs as sc

    torch.set_num_threads(args.threads)
    model = random_model(args.layers)
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    x = {"input_ids": torch.randint(1, 128256, (1, args.seq), generator=torch.Generator().manual_seed(0)),
         "use_cache": False}
    gc.collect()
    reset_peak()
    before = status()["VmRSS"]
    t0 = time.perf_counter()
    report = sc.prune(model, x, ratio={"heads": args.heads, "ffn": args.ffn}, importance="l2")
    seconds = time.perf_counter() - t0
    peak = status()["VmHWM"]
    after = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    print(json.dumps({"layers": args.layers, "weights_bytes": weights, "weights_after_bytes": after,
                      "rss_before": before, "peak_rss": peak, "seconds": seconds,
                      "peak_over_weights": peak / weights, "growth_over_weights": (peak - before) / weights,
                      "verified": report.verification.message if report.verification else None,
                      "secateurs": sc.__file__}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--heads", type=float, default=0.5)
    p.add_argument("--ffn", type=float, default=0.3)
    p.add_argument("--seq", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--code", default=None, help="secateurs checkout to measure (default: this one)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    code = Path(args.code or HERE.parent).resolve()
    env = {**os.environ, "PYTHONPATH": str(code)}
    cmd = [sys.executable, __file__, "--child", "--layers", str(args.layers), "--heads", str(args.heads),
           "--ffn", str(args.ffn), "--seq", str(args.seq), "--threads", str(args.threads)]
    load = os.getloadavg()[0]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode:
        sys.exit(out.stderr[-4000:])
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result.update(code=str(code), load_average=load)
    gib = 2**30
    print(json.dumps(result, indent=1))
    print(f"{code.name}: {args.layers} layers, weights {result['weights_bytes'] / gib:.2f} GiB, RSS before "
          f"{result['rss_before'] / gib:.2f} GiB, peak {result['peak_rss'] / gib:.2f} GiB = "
          f"{result['peak_over_weights']:.2f}x the weights (growth {result['growth_over_weights']:.2f}x), "
          f"{result['seconds']:.0f} s, load {load:.1f}")


if __name__ == "__main__":
    main()
