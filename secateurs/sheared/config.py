"""ShearConfig: the settings of ``sc.shear``; ShearResult: what it learned and the plan it applied."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from secateurs.config import with_options
from secateurs.errors import InvalidArgumentError
from secateurs.plans import Plan


@dataclass
class ShearConfig:
    """Settings of one ``sc.shear`` run (Xia et al., 2023, "Sheared LLaMA", section 2).

    ``steps`` optimizer steps on the model's own loss plus the Lagrangian, with AdamW on the weights (``lr``;
    ``train_weights=False`` keeps them frozen and learns the masks only), Adam without momentum on the masks'
    ``log_alpha`` (``mask_lr``) and gradient *ascent* (SGD) on the Lagrange multipliers (``lambda_lr``). The target fraction of every
    structure moves linearly from the full model to the target over the first ``warmup`` of the steps.
    ``anneal``: the last fraction of the steps train the weights on the final structure only: the masks are fixed
    to their top-``k`` units (exactly the target) with value 1 (no noise, no Lagrangian, kept units at full value),
    so the pruned model is the one those steps trained; 0 learns masks to the end and folds the kept units'
    deterministic values (some near 0) into the weights. Ignored with ``train_weights=False``; ``warmup + anneal``
    must be at most 1. ``init_from="activations"``: before the first step, score every unit on ``init_batches``
    batches (its contribution to the residual stream, see ``sheared.importance``) and start the masks ranked:
    ``log_alpha`` = the usual start ``+ init_spread * (rank - mean rank)`` (ranks in [0, 1] per set); ``None``
    starts every unit at ``init_keep``, the masks' initial deterministic value (close to the full model).
    The defaults (``anneal=0.5``, ``init_from="activations"``, ``init_spread=8``, ``init_keep=0.9``; before:
    no annealing, uniform start at 0.7) were chosen on ``bench/bench_llm_methods.py --parts shear`` (three seeds;
    see docs/benchmarks.md), where they bring the shorn model plus 150 fine-tuning steps from perplexity 5.83 to
    about 5.25. ``checkpoint_dir`` +
    ``checkpoint_every``: resumable runs (a run finds its checkpoint and continues). Data domains: pass ``data`` as
    ``{domain: batches}``; ``domain_weights`` (default equal) sets how often each is drawn, and with
    ``reference_loss={domain: loss}`` the weights follow Sheared-LLaMA's dynamic batch loading every
    ``update_every`` steps. ``tolerance``: the pruned model must equal the masked one within it (relative to the
    largest output; with the hidden size pruned the RMS norms' epsilon, now added to a mean over fewer squares,
    leaves differences of about ``eps / mean square``).
    """

    steps: int = 100
    lr: float = 1e-4
    mask_lr: float = 0.1
    lambda_lr: float = 3.0
    warmup: float = 0.5
    anneal: float = 0.5
    init_keep: float = 0.9
    init_from: str | None = "activations"
    init_spread: float = 8.0
    init_batches: int = 4
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    train_weights: bool = True
    seed: int = 0
    checkpoint_dir: str | None = None
    checkpoint_every: int = 50
    domain_weights: dict[str, float] | None = None
    reference_loss: dict[str, float] | None = None
    update_every: int = 10
    log_every: int = 10
    tolerance: float = 1e-2
    progress: bool = True

    def validate(self) -> None:
        if self.init_from not in (None, "activations"):
            raise InvalidArgumentError(f"init_from must be None or 'activations', got {self.init_from!r}")
        if isinstance(self.init_spread, bool) or not isinstance(self.init_spread, (int, float)) or not (
                self.init_spread >= 0 and math.isfinite(self.init_spread)):
            raise InvalidArgumentError(f"init_spread must be a non-negative number, got {self.init_spread!r}")
        for name in ("steps", "checkpoint_every", "update_every", "log_every", "init_batches"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InvalidArgumentError(f"{name} must be a positive integer, got {v!r}")
        for name in ("lr", "mask_lr", "lambda_lr", "tolerance"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v > 0 and math.isfinite(v)):
                raise InvalidArgumentError(f"{name} must be a positive number, got {v!r}")
        if not 0.0 <= self.warmup <= 1.0:
            raise InvalidArgumentError(f"warmup must be a fraction of the steps in [0, 1], got {self.warmup!r}")
        if not (0.0 <= self.anneal < 1.0 and self.warmup + self.anneal <= 1.0):
            raise InvalidArgumentError(f"anneal must be a fraction of the steps in [0, 1) with warmup + anneal <= 1 "
                                       f"(the target is reached before the structure is fixed), got anneal="
                                       f"{self.anneal!r} with warmup={self.warmup!r}: lower one of them")
        if not 0.0 < self.init_keep < 1.0:
            raise InvalidArgumentError(f"init_keep must be in (0, 1), got {self.init_keep!r}")
        for name in ("domain_weights", "reference_loss"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, dict) or not all(isinstance(x, (int, float)) for x in v.values())):
                raise InvalidArgumentError(f"{name} must be a dict of domain -> number, got {v!r}")

    @staticmethod
    def make(config: ShearConfig | None, options: dict[str, Any]) -> ShearConfig:
        cfg: ShearConfig = with_options(ShearConfig, config, options, "shear")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class ShearResult:
    """The plan applied (exact target shape), the final mask values, and the run's history.

    ``history``: every ``log_every`` steps, the step, losses, expected fraction kept per structure and its
    current target (while annealing, the kept count, which is the target). ``masked_rel_error``: the pruned model against the model with the final masks applied by hooks
    (the check that pruning by the masks is exact, up to the RMS norms' epsilon)."""

    plan: Plan
    target: dict[str, int]
    final_masks: dict[str, list[Any]]
    history: list[dict[str, Any]] = field(default_factory=list)
    domain_weights: list[dict[str, float]] = field(default_factory=list)
    steps: int = 0
    resumed_from: int | None = None
    masked_rel_error: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["plan"] = self.plan.to_dict()
        return d
