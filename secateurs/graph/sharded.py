"""Models sharded by FSDP2 (``fully_shard``) hold DTensor shards: they are pruned before sharding, not after."""

from __future__ import annotations

from torch import nn

from secateurs.errors import InvalidArgumentError


def is_fully_sharded(model: nn.Module) -> bool:
    """True when ``model`` or a submodule was sharded with FSDP2 ``fully_shard``."""
    if not isinstance(model, nn.Module):
        return False  # capture() raises the clear type error
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # torch built without distributed
        return False
    return any(isinstance(m, FSDPModule) for m in model.modules())


def refuse_sharded(model: nn.Module, what: str) -> None:
    if is_fully_sharded(model):
        raise InvalidArgumentError(
            f"cannot {what} {type(model).__name__}: it is sharded with FSDP (fully_shard), so each rank holds only "
            "a shard of every weight; prune the unsharded model first (plan on rank 0 and broadcast the plan, or "
            "plan on every rank and compare with secateurs.recovery.distributed.check_same_plan), then call "
            "fully_shard on the pruned model"
        )
