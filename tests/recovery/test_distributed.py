import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch.distributed as dist

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


def _can_spawn() -> bool:
    if not dist.is_available() or not dist.is_gloo_available():
        return False
    try:
        import multiprocessing

        multiprocessing.get_context("spawn")
    except (ImportError, ValueError):
        return False
    return os.environ.get("SECATEURS_SKIP_DISTRIBUTED") != "1"


pytestmark = pytest.mark.skipif(not _can_spawn(), reason="needs gloo and process spawning (set SECATEURS_SKIP_DISTRIBUTED=1 to skip)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(out: Path, *extra: str, timeout: float = 120) -> tuple[subprocess.CompletedProcess, float]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(HERE)]), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}",
           str(HERE / "dist_worker.py"), str(out), *extra]
    start = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=out)
    return proc, time.monotonic() - start


def test_two_process_recovery_and_iterative_pruning_then_failed_rank_ends_job(tmp_path):
    proc, elapsed = _torchrun(tmp_path, "crash")
    reports = [tmp_path / f"rank{r}.json" for r in (0, 1)]
    assert all(p.exists() for p in reports), proc.stdout[-3000:] + proc.stderr[-3000:]
    r0, r1 = (json.loads(p.read_text()) for p in reports)
    assert r0["world_size"] == 2
    assert r0["ddp_max_diff"] < 1e-5 and r1["ddp_max_diff"] < 1e-5  # DDP on 2 shards == 1 process on merged batches
    assert "differs across ranks" in r0["mismatch"] and "differs across ranks" in r1["mismatch"]
    assert r0["widths"] == r1["widths"] == [4, 4]
    assert r0["state_sums"][0] == r0["state_sums"][1]  # replicas identical after DDP recovery
    assert r0["losses"] == r1["losses"]  # losses are averaged over ranks
    ckpt = tmp_path / "ckpt"
    assert sorted(p.name for p in ckpt.iterdir()) == ["checkpoint.json", "step_002.safetensors"]
    # rank 1 then died while rank 0 waited on it: the job failed instead of hanging
    assert proc.returncode != 0
    assert "simulated failure of rank 1" in proc.stdout + proc.stderr
    assert elapsed < 100
