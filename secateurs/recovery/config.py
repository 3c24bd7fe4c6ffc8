"""RecoverConfig: the scalar settings of ``recover``; RecoverResult: what it did, epoch by epoch."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from secateurs.config import with_options
from secateurs.errors import InvalidArgumentError


@dataclass
class RecoverConfig:
    """Settings of one ``recover`` run. JSON-serializable (``to_dict``), so it can be logged with a plan.

    ``epochs`` passes over ``data``, or exactly ``steps`` optimizer steps when ``steps`` is set (the data
    is cycled). ``alpha`` weighs distillation against the task loss: ``alpha * kd + (1 - alpha) * task``;
    ``None`` means 1.0 with a teacher and no task loss, 0.5 with both, 0.0 without a teacher.
    ``distill_loss`` compares student and teacher outputs: ``"kl"`` (forward KL) or ``"reverse_kl"`` (MiniLLM's
    token-level reverse KL) on logits (with ``temperature``),
    ``"mse"`` or ``"cosine"`` on embeddings. ``amp``: ``True`` autocasts to ``amp_dtype`` (default float16 on
    CUDA, bfloat16 on CPU; float16 adds a GradScaler), ``"auto"`` enables it on CUDA only.

    ``schedule`` (``"cosine"``: half-cosine decay to 0 over the run, ``"constant"``) and ``warmup`` (fraction of
    the steps with a linear lr ramp) drive the SGD that ``recover`` builds; an optimizer passed in keeps its own lr.
    ``qat="int8"`` trains with int8 fake quantization (PT2E, torchao); ``sc.convert_int8`` then gives the int8 model.

    Where the defaults come from (issue #16, ``bench/bench_default_recovery.py``, docs/benchmarks.md "Default
    recovery"): the digits CNN with 70% of its channels pruned, distilled from the unpruned model over seeds 0-2.
    ``epochs=3, lr=0.02, schedule="cosine", temperature=2`` lost 0.96 points on average (worst seed 1.33) against
    4.30 (worst 6.89) for the previous ``lr=0.01`` constant schedule at 3 epochs; among 3-epoch recipes only
    ``lr=0.05, T=1`` was better on average (0.74) with a worse worst seed (1.78). 6 epochs lose 0.07: pass
    ``epochs`` (or ``steps``) for more. ``temperature`` 1, 2, 4 were within noise of each other once the lr decays.
    """

    epochs: int = 3
    steps: int | None = None
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: Literal["constant", "cosine"] = "cosine"
    warmup: float = 0.0
    temperature: float = 2.0
    distill_loss: str = "kl"
    alpha: float | None = None
    feature_pairs: Any = None  # {student_module: teacher_module} | [(s, t), ...] | [name, ...]
    feature_weight: float = 1.0
    grad_accum: int = 1
    max_grad_norm: float | None = None
    amp: bool | Literal["auto"] = "auto"
    amp_dtype: Literal["float16", "bfloat16"] | None = None
    seed: int = 0
    metric_mode: Literal["max", "min"] = "max"
    patience: int | None = None
    restore_best: bool = False
    progress: bool = True
    distributed: bool | Literal["auto"] = "auto"
    qat: Literal["int8"] | None = None

    def validate(self) -> None:
        def positive_int(name: str, value: Any, allow_none: bool = False) -> None:
            if value is None and allow_none:
                return
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidArgumentError(f"{name} must be a positive integer, got {value!r}")

        positive_int("epochs", self.epochs)
        positive_int("steps", self.steps, allow_none=True)
        positive_int("grad_accum", self.grad_accum)
        positive_int("patience", self.patience, allow_none=True)
        if not self.lr > 0:
            raise InvalidArgumentError(f"lr must be positive, got {self.lr!r}")
        from secateurs.recovery.schedule import SCHEDULES

        if self.schedule not in SCHEDULES:
            raise InvalidArgumentError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, (int, float)) or not 0.0 <= self.warmup < 1.0:
            raise InvalidArgumentError(f"warmup is the fraction of steps with a linear lr ramp, in [0, 1), got {self.warmup!r}")
        if self.qat not in (None, "int8"):
            raise InvalidArgumentError(f"qat must be None or 'int8' (fake-quantized int8 training), got {self.qat!r}")
        if not self.temperature > 0:
            raise InvalidArgumentError(f"temperature must be positive, got {self.temperature!r}")
        if self.alpha is not None and not 0.0 <= self.alpha <= 1.0:
            raise InvalidArgumentError(f"alpha must be in [0, 1], got {self.alpha!r}")
        if self.amp not in (True, False, "auto"):
            raise InvalidArgumentError(f"amp must be True, False or 'auto', got {self.amp!r}")
        if self.amp_dtype not in (None, "float16", "bfloat16"):
            raise InvalidArgumentError(f"amp_dtype must be None, 'float16' or 'bfloat16', got {self.amp_dtype!r}")
        from secateurs.recovery.distill import get_distill_loss

        get_distill_loss(self.distill_loss)
        if self.metric_mode not in ("max", "min"):
            raise InvalidArgumentError(f"metric_mode must be 'max' or 'min', got {self.metric_mode!r}")
        if self.distributed not in (True, False, "auto"):
            raise InvalidArgumentError(f"distributed must be True, False or 'auto', got {self.distributed!r}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["feature_pairs"] is not None:
            from secateurs.recovery.distill import parse_feature_pairs

            d["feature_pairs"] = [list(p) for p in parse_feature_pairs(self.feature_pairs)]
        return d

    @staticmethod
    def make(config: RecoverConfig | None, options: dict[str, Any]) -> RecoverConfig:
        cfg: RecoverConfig = with_options(RecoverConfig, config, options, "recover")
        return cfg


@dataclass
class EpochRecord:
    """Mean losses over one epoch (averaged over ranks) and the metric measured after it."""

    epoch: int
    steps: int
    loss: float
    task: float | None = None
    distill: float | None = None
    features: float | None = None
    regularizer: float | None = None
    metric: float | None = None


@dataclass
class RecoverResult:
    epochs: list[EpochRecord] = field(default_factory=list)
    steps: int = 0
    stopped_early: bool = False
    best_metric: float | None = None
    best_epoch: int | None = None

    @property
    def losses(self) -> list[float]:
        return [e.loss for e in self.epochs]

    @property
    def metrics(self) -> list[float | None]:
        return [e.metric for e in self.epochs]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
