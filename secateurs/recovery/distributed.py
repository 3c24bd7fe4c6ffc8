"""torch.distributed helpers: rank queries, sharding, plan agreement, rank-0 writes.

Everything here is a no-op (world size 1, rank 0) when no process group is initialized, so the
same code runs unchanged in one process and under ``torchrun``.
"""

from __future__ import annotations

import datetime
import hashlib
import os
from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.distributed as dist

from secateurs.errors import InvalidArgumentError, PlanError

DEFAULT_TIMEOUT_S = 300.0


def is_distributed() -> bool:
    """True when a process group with more than one rank is initialized."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """True on rank 0, the only rank that writes files."""
    return rank() == 0


def init_distributed(backend: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Initialize the default process group from ``torchrun``'s environment, with a finite timeout.

    Returns False (and does nothing) when not launched by a distributed launcher. The timeout makes a
    collective that waits on a crashed rank raise instead of hanging forever. ``backend`` defaults to
    ``nccl`` when CUDA is available, else ``gloo``.
    """
    if not dist.is_available() or "WORLD_SIZE" not in os.environ:
        return False
    if dist.is_initialized():
        return True
    if timeout_s <= 0:
        raise InvalidArgumentError(f"timeout_s must be positive, got {timeout_s!r}")
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return True


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_true(flag: bool) -> bool:
    """True when ``flag`` is true on every rank (a collective: every rank must call it)."""
    if not is_distributed():
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def min_across_ranks(value: int) -> int:
    if not is_distributed():
        return value
    t = torch.tensor([value], dtype=torch.int64, device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def mean_across_ranks(values: list[float]) -> list[float]:
    """Average a few floats over ranks (for reporting losses and metrics)."""
    if not is_distributed() or not values:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=_collective_device())
    dist.all_reduce(t)
    return (t / world_size()).tolist()


def average_buffers_(module: torch.nn.Module) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over ranks, in place.

    DDP keeps parameters identical but each rank's last forward updates its own running statistics;
    averaging them leaves identical replicas, so any rank's checkpoint or plan is the same.
    """
    if not is_distributed():
        return
    buffers = [b for b in module.buffers() if b.is_floating_point()]
    if not buffers:
        return
    flat = torch.cat([b.detach().reshape(-1).to(torch.float64) for b in buffers]).to(_collective_device())
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    with torch.no_grad():
        for b in buffers:
            n = b.numel()
            b.copy_(flat[offset:offset + n].reshape(b.shape).to(b.device, b.dtype))
            offset += n


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def check_same_plan(plan_json: str, what: str = "plan") -> None:
    """Raise PlanError on every rank unless all ranks hold the same plan JSON.

    Ranks pruning different channels would leave DDP replicas of different shapes; this compares a
    hash of each rank's plan so the mismatch is reported instead of surfacing as a hang or a shape error.
    """
    if not is_distributed():
        return
    digest = hashlib.sha256(plan_json.encode()).hexdigest()[:16]
    digests: list[Any] = [None] * world_size()
    dist.all_gather_object(digests, digest)
    if len(set(digests)) > 1:
        by_rank = ", ".join(f"rank {i}: {d}" for i, d in enumerate(digests))
        raise PlanError(
            f"the {what} differs across ranks ({by_rank}); every rank must hold identical weights before "
            "planning (load the same checkpoint on every rank, or plan on rank 0 and broadcast it)"
        )


def _collective_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


class Shard:
    """Every ``world_size``-th batch of ``data``, starting at this rank; re-iterable.

    Like ``DistributedSampler`` for an iterable of ready-made batches. When ``len(data)`` is known,
    every rank gets the same number of batches (the tail is dropped), so no rank waits on another.
    """

    def __init__(self, data: Iterable[Any], rank_: int | None = None, world_size_: int | None = None):
        self.data = data
        self.rank = rank() if rank_ is None else rank_
        self.world_size = world_size() if world_size_ is None else world_size_
        if not 0 <= self.rank < self.world_size:
            raise InvalidArgumentError(f"rank {self.rank} is outside world size {self.world_size}")

    def __len__(self) -> int:
        return len(self.data) // self.world_size  # type: ignore[arg-type]

    def set_epoch(self, epoch: int) -> None:
        for obj in (self.data, getattr(self.data, "sampler", None)):
            if obj is not None and hasattr(obj, "set_epoch"):
                obj.set_epoch(epoch)

    def __iter__(self) -> Iterator[Any]:
        try:
            limit: int | None = len(self) * self.world_size
        except TypeError:
            limit = None
        for i, batch in enumerate(self.data):
            if limit is not None and i >= limit:
                return
            if i % self.world_size == self.rank:
                yield batch


def shard(data: Iterable[Any]) -> Iterable[Any]:
    """This rank's share of ``data`` (an iterable of batches); ``data`` itself in a single process."""
    return Shard(data) if is_distributed() else data


def sharded_loader(dataset: Any, batch_size: int, *, shuffle: bool = True, seed: int = 0,
                   drop_last: bool = False, **loader_kwargs: Any) -> torch.utils.data.DataLoader:
    """A DataLoader over this rank's part of ``dataset`` (a ``DistributedSampler`` when distributed).

    ``recover`` calls ``set_epoch`` on its sampler each epoch, so shuffling differs between epochs.
    """
    from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, SequentialSampler

    sampler: Any
    if is_distributed():
        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)
    elif shuffle:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    else:
        sampler = SequentialSampler(dataset)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, **loader_kwargs)
