"""An FSDP2-sharded model is refused by analyze/plan/apply with an error that says to prune before sharding."""

import socket

import pytest
import torch
import torch.distributed as dist
from torch import nn

import secateurs as sc
from secateurs.errors import InvalidArgumentError
from secateurs.graph.sharded import is_fully_sharded

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")


@pytest.fixture
def one_rank_group():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_sharded_model_is_refused_and_the_unsharded_one_is_not(one_rank_group):
    from torch.distributed.fsdp import fully_shard

    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    x = torch.randn(2, 6)
    plan = sc.plan(model, x, ratio=0.5)
    assert not is_fully_sharded(model)
    fully_shard(model)
    assert is_fully_sharded(model)
    with pytest.raises(InvalidArgumentError, match="sharded with FSDP.*prune the unsharded model first"):
        sc.plan(model, x, ratio=0.5)
    with pytest.raises(InvalidArgumentError, match="cannot apply a plan to"):
        sc.apply(model, plan)
