"""secateurs vs Torch-Pruning on torchvision models: 50% channels, one run, one table.

    PYTHONPATH=. python bench/bench_vision.py --quick      # minutes; noisy numbers, for development
    PYTHONPATH=. python bench/bench_vision.py              # full: 15 timed runs per point

Per model: one set of random weights (norm constants randomised too, see vision_tools.py) is
saved once; each tool prunes a copy in its own process under a time limit (a crash or hang is a
table row, not the end of the run). Then the unpruned model and every pruned result are timed
interleaved, so background load hits all of them alike. See bench/README.md for the columns.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn
from vision_tools import MODELS, TOOLS, build_model, example_input, randomize_constants_

HERE = Path(__file__).resolve().parent


def environment(threads: int) -> dict[str, Any]:
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    try:
        import torch_pruning

        tp_module = getattr(torch_pruning, "__version__", "?")
    except ImportError:
        tp_module = "not installed"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True).stdout.strip()
    return {
        "torch": torch.__version__, "torchvision": version("torchvision"), "torch_pruning": version("torch-pruning"),
        "torch_pruning_module": tp_module,
        "secateurs_commit": commit or "unknown", "python": platform.python_version(), "cpu": cpu,
        "nproc": os.cpu_count(), "threads": threads, "loadavg_start": os.getloadavg(),
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def prune_in_subprocess(tool: str, name: str, base: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    out_json, out_model = work / f"{name}-{tool}.json", work / f"{name}-{tool}.pt"
    cmd = [sys.executable, str(HERE / "vision_worker.py"), "--tool", tool, "--model", name, "--base", str(base),
           "--out-model", str(out_model), "--out-json", str(out_json), "--ratio", str(args.ratio),
           "--threads", str(args.threads)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"tool": tool, "model": name, "ok": False, "stage": "timeout",
                "error": f"no result within {args.timeout:.0f} s (process killed)"}
    wall = time.perf_counter() - t0
    if not out_json.exists():
        return {"tool": tool, "model": name, "ok": False, "stage": "crash",
                "error": f"worker exited with code {proc.returncode}: {proc.stderr.strip()[-400:]}"}
    res = json.loads(out_json.read_text())
    res["worker_wall_s"] = wall
    if res.get("ok"):
        res["model_obj"] = torch.load(out_model, weights_only=False).eval()
    return res


def latency_ms(variants: dict[str, nn.Module], batch: int, repeats: int, warmup: int) -> dict[str, list[float]]:
    """Times every variant once per round, rotating the order, so load drifts hit all alike."""
    x = example_input(batch, seed=1)
    names = list(variants)
    times: dict[str, list[float]] = {k: [] for k in names}
    with torch.inference_mode():
        for k in names:
            for _ in range(warmup):
                variants[k](x)
        for r in range(repeats):
            for k in names[r % len(names):] + names[:r % len(names)]:
                t = time.perf_counter()
                variants[k](x)
                times[k].append((time.perf_counter() - t) * 1e3)
    return times


def bench_model(name: str, args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    import secateurs as sc

    torch.manual_seed(args.seed)
    base_model = randomize_constants_(build_model(name), args.seed).eval()
    base = work / f"{name}-base.pt"
    torch.save(base_model.state_dict(), base)
    macs0, params0 = sc.count(base_model, example_input())
    rows: list[dict[str, Any]] = [{"model": name, "tool": "unpruned", "ok": True, "macs": macs0, "params": params0,
                                   "model_obj": base_model}]
    for tool in args.tools:
        log(f"[{name}] pruning with {tool} ...")
        res = prune_in_subprocess(tool, name, base, work, args)
        log(f"[{name}] {tool}: {'ok' if res.get('ok') else 'FAILED'} "
            f"{res.get('check', {}).get('message', '') or res.get('error', '')}"[:300])
        rows.append(res)
    variants = {r["tool"]: r["model_obj"] for r in rows if r.get("ok")}
    for batch in args.batches:
        log(f"[{name}] timing batch {batch}: {', '.join(variants)} x {args.repeats} interleaved ...")
        times = latency_ms(variants, batch, args.repeats, args.warmup)
        for r in rows:
            if r["tool"] in times:
                r[f"b{batch}_ms"] = statistics.median(times[r["tool"]])
                r[f"b{batch}_samples_ms"] = [round(t, 3) for t in times[r["tool"]]]
    for r in rows:
        r.pop("model_obj", None)
        r["macs_frac"] = r["macs"] / macs0 if r.get("macs") else None
        r["params_frac"] = r["params"] / params0 if r.get("params") else None
        for batch in args.batches:
            ms, ms0 = r.get(f"b{batch}_ms"), rows[0].get(f"b{batch}_ms")
            if ms and ms0:
                r[f"b{batch}_speedup"] = ms0 / ms
                if r["macs_frac"]:
                    r[f"b{batch}_vs_ideal"] = (ms0 / ms) * r["macs_frac"]  # speed-up / (1 / MACs kept)
    return rows


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 timed runs per point, 1 warm-up: fast, noisy")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--tools", nargs="+", default=list(TOOLS), choices=TOOLS)
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 16])
    ap.add_argument("--repeats", type=int, help="timed runs per point (default 15, --quick 3)")
    ap.add_argument("--warmup", type=int, help="untimed runs per point first (default 3, --quick 1)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ratio", type=float, default=0.5, help="fraction of channels removed (default 0.5)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds allowed per tool and model (default 900)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    args.repeats = args.repeats or (3 if args.quick else 15)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    torch.set_num_threads(args.threads)

    from report import markdown  # local import keeps --help fast

    mode = "quick" if args.quick else "full"
    env = environment(args.threads)
    env.update(mode=mode, repeats=args.repeats, warmup=args.warmup, ratio=args.ratio, timeout_s=args.timeout,
               batches=args.batches, command=" ".join(["python", "bench/bench_vision.py", *(argv or sys.argv[1:])]))
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="secateurs-bench-") as tmp:
        for name in args.models:
            rows.extend(bench_model(name, args, Path(tmp)))
    env["wall_s"] = round(time.perf_counter() - t0, 1)
    env["loadavg_end"] = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    text = markdown(rows, env)
    (args.out / f"vision-{mode}.json").write_text(json.dumps({"env": env, "rows": rows}, indent=1, default=str))
    (args.out / f"vision-{mode}.md").write_text(text)
    print(text)
    log(f"wrote {args.out / f'vision-{mode}.md'} and .json in {env['wall_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
