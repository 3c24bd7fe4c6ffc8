"""Two gloo ranks, each with its own batches, end with the statistics of all batches."""

from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp

from secateurs.calibration import collect
from secateurs.testing.toys import MLP


def _rank(rank: int, store: str, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        model = MLP().eval()
        batches = [torch.full((2, 6), float(rank + 1))]
        stats = collect(model, batches, moments=["fc1"])
        if rank == 0:
            torch.save({"sum": stats.inputs["fc1"].sum, "n": stats.n_batches, "count": stats.inputs["fc1"].count,
                        "gram": stats.moments["fc1"].gram}, out)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_sum_their_statistics(tmp_path, request) -> None:
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("spawns two processes (~40 s on 2 CPUs); run with -m slow")
    out = str(tmp_path / "rank0.pt")
    mp.spawn(_rank, args=(str(tmp_path / "store"), out), nprocs=2, join=True)
    got = torch.load(out)
    assert got["n"] == 2 and float(got["count"]) == 4
    torch.testing.assert_close(got["sum"], torch.full((6,), 2 * 1.0 + 2 * 2.0, dtype=torch.float64))
    torch.testing.assert_close(got["gram"], torch.full((6, 6), 2 * 1.0 + 2 * 4.0, dtype=torch.float64))  # input moments
