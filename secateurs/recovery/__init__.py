"""Recovery after pruning: fine-tuning with distillation, sparsity regularizers, iterative pruning.

Everything runs unchanged in one process or under ``torchrun`` (see ``secateurs.recovery.distributed``).
"""

from __future__ import annotations

from secateurs.recovery import regularizers
from secateurs.recovery.config import EpochRecord, RecoverConfig, RecoverResult
from secateurs.recovery.distill import kd_loss
from secateurs.recovery.distributed import init_distributed, shard, sharded_loader
from secateurs.recovery.iterative import (
    IterativeResult,
    StepInfo,
    cosine_schedule,
    geometric_schedule,
    iterative_prune,
    linear_schedule,
    load_checkpoint,
)
from secateurs.recovery.loop import recover

__all__ = [
    "EpochRecord", "IterativeResult", "RecoverConfig", "RecoverResult", "StepInfo", "cosine_schedule", "geometric_schedule",
    "init_distributed", "iterative_prune", "kd_loss", "linear_schedule", "load_checkpoint", "recover",
    "regularizers", "shard", "sharded_loader",
]
