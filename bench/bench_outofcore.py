"""Out-of-core pruning of a Llama-3-8B-shaped bf16 checkpoint (random weights) on this machine.

    PYTHONPATH=. python bench/bench_outofcore.py make /tmp/llama8b --layers 32        # ~16 GB on disk
    PYTHONPATH=. python bench/bench_outofcore.py cli /tmp/llama8b /tmp/out-l2 --importance l2
    PYTHONPATH=. python bench/bench_outofcore.py cli /tmp/llama8b /tmp/out-wanda --importance wanda \\
        --calibration-batches 8 --seq-len 256
    PYTHONPATH=. python bench/bench_outofcore.py parts /tmp/llama8b /tmp/out-parts    # per-part time and memory

``cli`` runs ``secateurs prune hf:SRC -o DST --out-of-core --ratio heads=0.25,ffn=0.3`` under /usr/bin/time and
reports wall time and peak RSS (the child's maximum resident set). ``parts`` runs ``prune_checkpoint`` in a child
that resets the kernel's peak-RSS counter before each part and records the time and peak of every part.
``check`` loads DST with ``AutoModelForCausalLM.from_pretrained`` (bf16) and runs it on a few tokens; ``equal``
loads DST that way and compares every tensor with ``sc.prune`` of SRC in memory (for a slice that fits).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def make(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(HERE))
    from llm_shapes import write_checkpoint

    free = shutil.disk_usage(Path(args.dir).parent).free
    t0 = time.perf_counter()
    root = write_checkpoint(args.dir, args.layers)
    size = sum(p.stat().st_size for p in root.glob("*.safetensors"))
    print(json.dumps({"dir": str(root), "layers": args.layers, "bytes": size, "seconds": time.perf_counter() - t0,
                      "disk_free_before": free}))


def cli(args: argparse.Namespace) -> None:
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "secateurs", "--json", "prune", f"hf:{args.src}", "-o", args.dst,
           "--out-of-core", "--ratio", args.ratio, "--importance", args.importance, "--force", "--threads",
           str(args.threads), "--seq-len", str(args.seq_len)]
    if args.importance != "l2":
        cmd += ["--calibration", "synthetic", "--calibration-batches", str(args.calibration_batches)]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode:
        sys.exit(out.stderr[-4000:])
    peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr).group(1)) * 1024  # type: ignore[union-attr]
    doc = json.loads(out.stdout)
    result = {"command": " ".join(cmd[2:]), "wall_seconds": wall, "peak_rss_bytes": peak, "load_start": load,
              "load_end": os.getloadavg()[0], "stages": doc.get("seconds"), "bytes_before": doc.get("bytes_before"),
              "bytes_after": doc.get("bytes_after"), "checks": len(doc.get("checks", [])),
              "worst_rel_error": max((c["rel_error"] or 0.0 for c in doc.get("checks", [])), default=None),
              "count_constraints": (doc.get("settings") or {}).get("count_constraints", [])[:1]}
    print(json.dumps(result, indent=1))
    print(f"{args.importance}: {wall:.0f} s, peak RSS {peak / 2**30:.2f} GiB, load {load:.1f} -> {result['load_end']:.1f}")


def _child_parts(args: argparse.Namespace) -> None:
    import torch

    import secateurs.outofcore.prune as oc

    torch.set_num_threads(args.threads)

    def status() -> dict[str, int]:
        return {k: int(v.split()[0]) * 1024 for k, _, v in
                (line.partition(":") for line in Path("/proc/self/status").read_text().splitlines())
                if k in ("VmRSS", "VmHWM")}

    rows = []
    real = oc._part

    def timed(ckpt, model, pruned, plan, part, *rest):  # type: ignore[no-untyped-def]
        Path("/proc/self/clear_refs").write_text("5")
        before, t0 = status()["VmRSS"], time.perf_counter()
        out = real(ckpt, model, pruned, plan, part, *rest)
        rows.append({"part": part.name, "seconds": time.perf_counter() - t0, "rss_before": before,
                     "peak": status()["VmHWM"], "bytes": sum(ckpt.tensors[n].nbytes for n in part.tensors)})
        return out

    oc._part = timed  # type: ignore[assignment]
    x = oc.default_inputs(oc.build_skeleton(oc.Checkpoint(args.src)), args.seq_len)
    report = oc.prune_checkpoint(args.src, args.dst, x, ratio={"heads": 0.25, "ffn": 0.3}, overwrite=True)
    print(json.dumps({"parts": rows, "seconds": report.seconds, "peak": status()["VmHWM"]}))


def parts(args: argparse.Namespace) -> None:
    cmd = [sys.executable, __file__, "_parts", args.src, args.dst, "--threads", str(args.threads), "--seq-len",
           str(args.seq_len)]
    out = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
    if out.returncode:
        sys.exit(out.stderr[-4000:])
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    layers = [r for r in doc["parts"] if r["part"][-1].isdigit()]
    gib = 2**30
    for r in doc["parts"]:
        print(f"{r['part']:>20}: {r['seconds']:6.2f} s, {r['bytes'] / gib:.2f} GiB of weights, RSS {r['rss_before'] / gib:.2f}"
              f" -> peak {r['peak'] / gib:.2f} GiB")
    mean = sum(r["seconds"] for r in layers) / max(len(layers), 1)
    grow = max((r["peak"] - r["rss_before"]) for r in layers) if layers else 0
    print(json.dumps({"layer_seconds_mean": mean, "layer_peak_growth_max": grow, "stages": doc["seconds"],
                      "parts": doc["parts"]}, indent=1))


def check(args: argparse.Namespace) -> None:
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(args.dst, dtype=torch.bfloat16)
    ids = torch.randint(1, model.config.vocab_size, (1, 8))
    with torch.no_grad():
        logits = model(input_ids=ids, use_cache=False).logits
    print(json.dumps({"loaded": type(model).__name__, "config": {k: getattr(model.config, k) for k in (
        "hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "num_hidden_layers")},
        "logits": list(logits.shape), "finite": bool(torch.isfinite(logits).all())}))


def equal(args: argparse.Namespace) -> None:
    """DST (written out of core from SRC) loads with from_pretrained and equals sc.prune of SRC in memory."""
    import torch
    import transformers

    import secateurs as sc

    torch.set_num_threads(args.threads)
    pruned = transformers.AutoModelForCausalLM.from_pretrained(args.dst, dtype=torch.bfloat16)
    out = {k: v for k, v in pruned.state_dict().items()}
    del pruned
    model = transformers.AutoModelForCausalLM.from_pretrained(args.src, dtype=torch.bfloat16).eval()
    model.config.use_cache = False
    ids = torch.randint(0, model.config.vocab_size, (1, args.seq_len), generator=torch.Generator().manual_seed(0))
    ratio = dict((k, float(v)) for k, v in (item.split("=") for item in args.ratio.split(",")))
    report = sc.prune(model, {"input_ids": ids, "use_cache": False}, ratio=ratio, importance="l2")
    mine = model.state_dict()
    same = mine.keys() == out.keys() and all(torch.equal(mine[k], out[k]) for k in mine)
    print(json.dumps({"from_pretrained": True, "tensors": len(out), "bit_for_bit_equal": same,
                      "in_memory_verification": report.verification.message if report.verification else None}))


def plansize(args: argparse.Namespace) -> None:
    """Plan JSON of the full Llama-3-8B shape on the meta device (importance random), format 2 vs format 1."""
    import dataclasses

    import torch
    import transformers

    sys.path.insert(0, str(HERE))
    from llm_shapes import config_dict

    import secateurs as sc

    c = config_dict(args.layers)
    config = transformers.LlamaConfig(**{k: v for k, v in c.items() if k not in ("architectures", "model_type")})
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(config).to(torch.bfloat16).eval()
    x = {"input_ids": torch.randint(1, 1000, (1, 8)), "use_cache": False}
    rows = {}
    for ratio in ({"heads": 0.25, "ffn": 0.3}, {"heads": 0.5, "ffn": 0.3}, {"ffn": 0.3, "hidden": 0.25}):
        plan = sc.plan(model, x, ratio=ratio, importance="random", round_to=8)
        old = dataclasses.asdict(dataclasses.replace(plan, config=None))  # format 1: every index listed
        old["keep"] = {k: {str(d): i for d, i in v.items()} for k, v in plan.keep.items()}
        old["config"], old["format"] = plan.config.to_dict() if plan.config else None, 1
        rows[json.dumps(ratio)] = {"format2_bytes": len(plan.to_json()), "format1_bytes": len(json.dumps(old)),
                                   "units_removed": plan.removed_units()}
    print(json.dumps(rows, indent=1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("dir")
    m.add_argument("--layers", type=int, default=32)
    for name in ("cli", "parts", "_parts", "equal"):
        c = sub.add_parser(name)
        c.add_argument("src")
        c.add_argument("dst")
        c.add_argument("--threads", type=int, default=2)
        c.add_argument("--seq-len", type=int, default=128)
        c.add_argument("--ratio", default="heads=0.25,ffn=0.3")
        c.add_argument("--importance", default="l2")
        c.add_argument("--calibration-batches", type=int, default=8)
    ps = sub.add_parser("plansize")
    ps.add_argument("--layers", type=int, default=32)
    k = sub.add_parser("check")
    k.add_argument("dst")
    args = p.parse_args()
    {"make": make, "cli": cli, "parts": parts, "_parts": _child_parts, "check": check, "equal": equal,
     "plansize": plansize}[args.cmd](args)


if __name__ == "__main__":
    main()
