"""Digits CNN prune + recover, once in one process and once under torchrun (2 ranks, gloo, CPU).

    PYTHONPATH=. python bench/bench_distributed.py [--epochs 6] [--seeds 3] [--ratio 0.5]

The unpruned CNN (``bench_recovery.cnn`` on scikit-learn digits) is trained once here and saved; each run
loads it, plans and applies ``ratio`` of the channels with ``l2``, checks that every rank holds the same
plan (``check_same_plan``), then recovers it by distillation + cross-entropy from the unpruned model.

Same global batch: the training set is cut into batches of 32 (reshuffled every epoch). One process
trains on pairs of consecutive batches merged into 64; under torchrun rank r takes batches r, r + 2, ...,
so step k sees the same 64 samples, and DDP averages the two ranks' gradients as one process averages
over 64. Only BatchNorm's batch statistics differ (per rank of 32 vs 64), plus float summation order.
Noise is measured as the spread of single-process accuracy over ``--seeds`` shuffling seeds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from bench_recovery import accuracy, cnn, digits

import secateurs as sc
from secateurs.recovery import distributed as D

HERE = Path(__file__).resolve().parent


class Batches:
    """Batches of 32 in a fresh seeded order each epoch; ``merge`` joins consecutive pairs into 64."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, seed: int, merge: bool):
        self.x, self.y, self.seed, self.merge, self.epoch = x, y, seed, merge, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _small(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self.y), generator=torch.Generator().manual_seed(self.seed * 1000 + self.epoch))
        order = order[: len(order) // 64 * 64]  # whole global batches only
        return [(self.x[order[i:i + 32]], self.y[order[i:i + 32]]) for i in range(0, len(order), 32)]

    def __len__(self) -> int:
        n = len(self.y) // 64 * 2
        return n // 2 if self.merge else n

    def __iter__(self):
        small = self._small()
        if not self.merge:
            return iter(small)
        return iter([(torch.cat([a[0], b[0]]), torch.cat([a[1], b[1]])) for a, b in zip(small[::2], small[1::2], strict=True)])


def worker(args: argparse.Namespace) -> None:
    """One run (one process, or one rank under torchrun): load, plan, check, apply, recover, evaluate."""
    from safetensors.torch import load_file

    torch.set_num_threads(1)
    distributed = sc.recovery.init_distributed(backend="gloo", timeout_s=120)
    xtr, ytr, xte, yte = digits(0)
    model, teacher = cnn(), cnn()
    state = load_file(args.weights)
    model.load_state_dict(state)
    teacher.load_state_dict(state)
    teacher.eval()
    start = time.perf_counter()
    plan = sc.plan(model, xtr[:1], ratio=args.ratio, importance="l2")
    plan_json = plan.to_json()
    D.check_same_plan(plan_json)  # raises PlanError on every rank if any rank planned differently
    sc.apply(model, plan)
    data = Batches(xtr, ytr, args.seed, merge=not distributed)
    result = sc.recover(model, D.shard(data), teacher=teacher, loss=F.cross_entropy, alpha=0.7, temperature=4.0,
                        epochs=args.epochs, lr=0.01, seed=args.seed, progress=False)
    seconds = time.perf_counter() - start
    report = {"rank": D.rank(), "world_size": D.world_size(), "plan_sha256": hashlib.sha256(plan_json.encode()).hexdigest(),
              "accuracy": accuracy(model, xte, yte), "seconds": seconds, "steps": result.steps,
              "losses": result.losses, "params": sum(p.numel() for p in model.parameters())}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"rank{D.rank()}-seed{args.seed}-ws{D.world_size()}.json").write_text(json.dumps(report))
    if distributed:
        torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(cmd: list[str], timeout: float) -> float:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent), str(HERE)]), OMP_NUM_THREADS="1")
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--seeds", type=int, default=3, help="single-process runs (shuffling seeds) to measure noise")
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--timeout", type=int, default=300)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--weights", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(HERE / "results" / "distributed"))
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return 0
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    xtr, ytr, xte, yte = digits(0)
    torch.manual_seed(0)
    base = cnn()
    sc.recover(base, Batches(xtr, ytr, 0, merge=True), epochs=25, seed=0, progress=False,
               optimizer=lambda p: torch.optim.Adam(p, lr=3e-3))
    base_acc = accuracy(base, xte, yte)
    out = Path(args.out)
    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "base.safetensors")
        save_file({k: v.contiguous() for k, v in base.state_dict().items()}, weights)
        common = ["--worker", "--weights", weights, "--epochs", str(args.epochs), "--ratio", str(args.ratio), "--out", str(out)]
        single_s = [_launch([sys.executable, str(HERE / "bench_distributed.py"), *common, "--seed", str(s)], args.timeout)
                    for s in range(args.seeds)]
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
                    f"--master_port={_free_port()}", str(HERE / "bench_distributed.py"), *common, "--seed", "0"]
        dist_s = _launch(torchrun, args.timeout)

    def load(name: str) -> dict[str, Any]:
        return json.loads((out / name).read_text())

    singles = [load(f"rank0-seed{s}-ws1.json") for s in range(args.seeds)]
    ranks = [load(f"rank{r}-seed0-ws2.json") for r in (0, 1)]
    plans = {r["plan_sha256"] for r in singles + ranks}
    accs = [r["accuracy"] for r in singles]
    noise = statistics.stdev(accs) if len(accs) > 1 else float("nan")
    summary = {"base_accuracy": base_acc, "ratio": args.ratio, "epochs": args.epochs, "single": singles, "ranks": ranks,
               "identical_plans": len(plans) == 1, "single_wall_s": single_s, "torchrun_wall_s": dist_s,
               "single_accuracy_stdev": noise, "test_images": len(yte)}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    md = markdown(summary)
    (out.parent / "distributed.md").write_text(md)
    print(md)
    return 0 if summary["identical_plans"] else 1


def markdown(s: dict[str, Any]) -> str:
    one, r0, r1 = s["single"][0], s["ranks"][0], s["ranks"][1]
    accs = ", ".join(f"{r['accuracy']:.4f}" for r in s["single"])
    return "\n".join([
        f"digits CNN (base test accuracy {s['base_accuracy']:.4f}, {s['test_images']} test images), {s['ratio']:.0%} channels "
        f"removed (l2), {s['epochs']} epochs KD+CE recovery, global batch 64, 1 thread per process", "",
        "| run | plan sha256 (first 12) | steps | test acc | plan+apply+recover s | wall s (launch to exit) |",
        "|---|---|---|---|---|---|",
        f"| 1 process, seed 0 | {one['plan_sha256'][:12]} | {one['steps']} | {one['accuracy']:.4f} | {one['seconds']:.1f} | "
        f"{s['single_wall_s'][0]:.1f} |",
        f"| torchrun 2 x gloo, rank 0 | {r0['plan_sha256'][:12]} | {r0['steps']} | {r0['accuracy']:.4f} | {r0['seconds']:.1f} | "
        f"{s['torchrun_wall_s']:.1f} |",
        f"| torchrun 2 x gloo, rank 1 | {r1['plan_sha256'][:12]} | {r1['steps']} | {r1['accuracy']:.4f} | {r1['seconds']:.1f} | |",
        "", f"Identical plans on every run and rank: {s['identical_plans']}. Single-process accuracy over "
        f"{len(s['single'])} shuffling seeds: {accs} (stdev {s['single_accuracy_stdev']:.4f}; one test image = "
        f"{1 / s['test_images']:.4f}).", ""])


if __name__ == "__main__":
    raise SystemExit(main())
