"""sc.recover on an FSDP2 (fully_shard) student, 2 processes, gloo on CPU."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist

HERE = Path(__file__).parent
ROOT = HERE.parent.parent

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available() or os.environ.get("SECATEURS_SKIP_DISTRIBUTED") == "1",
    reason="needs gloo and process spawning (set SECATEURS_SKIP_DISTRIBUTED=1 to skip)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # two torchrun processes: about 35 s on a busy 2-core machine
def test_fsdp2_recover_on_two_cpu_ranks_matches_one_process(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(HERE)]), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", str(HERE / "fsdp_worker.py"), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    reports = [tmp_path / f"rank{r}.json" for r in (0, 1)]
    assert all(p.exists() for p in reports), proc.stdout[-3000:] + proc.stderr[-3000:]
    r0, r1 = (json.loads(p.read_text()) for p in reports)
    assert r0["ok"] and r1["ok"], r0.get("error")
    assert r0["sharded_param_type"] == "DTensor"
    assert r0["max_diff"] < 1e-5 and r1["max_diff"] < 1e-5  # FSDP on 2 shards == 1 process on merged batches
    assert r0["losses"] == r1["losses"]
    assert r0["losses"] == pytest.approx(r0["single_losses"], rel=1e-5)
    assert r0["pruned_width"] == r1["pruned_width"] == 8
    assert r0["plan_then_shard_losses"] == r1["plan_then_shard_losses"]
    assert "sharded with FSDP" in r0["sharded_plan"] and "prune the unsharded model first" in r0["sharded_plan"]
    assert "feature_pairs with an FSDP-sharded student" in r0["feature_pairs_error"]
