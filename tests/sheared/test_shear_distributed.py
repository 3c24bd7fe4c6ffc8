"""sc.shear under torchrun: two ranks on different shards keep identical masks, plans and weights."""

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

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available() or os.environ.get("SECATEURS_SKIP_DISTRIBUTED") == "1",
    reason="needs gloo and process spawning")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ranks_shear_to_the_same_model(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(HERE)]), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", str(HERE / "shear_worker.py"), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    reports = [tmp_path / f"rank{r}.json" for r in (0, 1)]
    assert all(p.exists() for p in reports), proc.stdout[-3000:] + proc.stderr[-3000:]
    r0, r1 = (json.loads(p.read_text()) for p in reports)
    assert r0["world_size"] == 2 and r0["layers"] == r1["layers"] == 2
    assert r0["plan"] == r1["plan"] and r0["masks"] == r1["masks"]
    assert r0["weights"] == pytest.approx(r1["weights"], rel=1e-9)
    assert r0["losses"] == r1["losses"]  # averaged over the ranks' shards
    assert (tmp_path / "ckpt" / "shear.json").exists()
