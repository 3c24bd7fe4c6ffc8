"""What a pruning aims for: one typed target (a ratio removed, a MACs/parameters budget kept, or latency kept).

``PruneConfig.target`` holds exactly one of these, so "ratio and macs together" cannot be written. The unit
kinds a ratio may name live here too, since both the config and the selection stage read them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from secateurs.errors import InvalidArgumentError, InvalidTypeError

DEFAULT_KINDS = ("channels", "heads")
#: channel groups split by role: ``hidden`` = on a residual stream (summed with another activation; in a
#: transformer the hidden size through embeddings, norms and every block), ``ffn`` = an intermediate width found
#: from the graph (between two weighted layers, only per-channel ops in between: FFN neurons, every MoE expert's
#: width, inside-block channels of a CNN). ``channels`` covers both, and the channels that are neither.
CHANNEL_ROLES = ("ffn", "hidden")
#: ``experts``: whole mixture-of-experts experts (router row + every expert tensor's slice), found from the graph
KINDS = ("channels", "heads", "query_heads", "head_dim", *CHANNEL_ROLES, "experts")

#: ``timer(model, args, kwargs) -> float``: one timed forward pass (any unit; only ratios are used)
Timer = Callable[[Any, tuple[Any, ...], dict[str, Any]], float]


def resolve_ratio(ratio: float | Mapping[str, float]) -> dict[str, float]:
    """A float applies to channels and heads; a dict names unit kinds explicitly."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float, Mapping)):
        raise InvalidTypeError(f"ratio must be a float or a dict of unit kind -> float, got {type(ratio).__name__}")
    items = dict.fromkeys(DEFAULT_KINDS, float(ratio)) if isinstance(ratio, (int, float)) else dict(ratio)
    for kind, r in items.items():
        if kind not in KINDS:
            raise InvalidArgumentError(f"unknown unit kind {kind!r} in ratio; use one of {', '.join(KINDS)}")
        if not isinstance(r, (int, float)) or isinstance(r, bool) or not 0.0 <= float(r) < 1.0:
            raise InvalidArgumentError(f"ratio for {kind!r} must be a number in [0, 1) (the fraction removed), got {r!r}")
    return {k: float(v) for k, v in items.items()}


def _fraction_kept(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) <= 1.0:
        raise InvalidArgumentError(f"{name} must be the fraction of {name} KEPT, in (0, 1], got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Ratio:
    """Remove ``value`` of the units of every prunable group (local) or of each kind (global): a float applies to
    channels and heads, a dict names kinds (``{"heads": 0.25, "ffn": 0.3, "hidden": 0.1}``)."""

    value: float | Mapping[str, float] = 0.5
    kind = "ratio"

    def __post_init__(self) -> None:
        resolve_ratio(self.value)
        if isinstance(self.value, Mapping):
            object.__setattr__(self, "value", {str(k): float(v) for k, v in self.value.items()})
        else:
            object.__setattr__(self, "value", float(self.value))

    def ratios(self) -> dict[str, float]:
        return resolve_ratio(self.value)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": dict(self.value) if isinstance(self.value, Mapping) else self.value}


@dataclass(frozen=True)
class Budget:
    """Keep ``macs`` of the model's MACs and/or ``params`` of its parameters (fractions kept; met within ±5%,
    checked with ``sc.count``). With both, each is at most its budget and at least one is met."""

    macs: float | None = None
    params: float | None = None
    kind = "budget"

    def __post_init__(self) -> None:
        if self.macs is None and self.params is None:
            raise InvalidArgumentError("a Budget needs macs= and/or params= (the fractions kept)")
        for name in ("macs", "params"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, _fraction_kept(name, getattr(self, name)))

    def targets(self) -> dict[str, float]:
        return {k: v for k, v in (("macs", self.macs), ("params", self.params)) if v is not None}

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "macs": self.macs, "params": self.params}


@dataclass(frozen=True)
class LatencyTarget:
    """``latency=LatencyTarget(0.5, threads=1)``: keep ``fraction`` of the measured latency of the unpruned
    model, within ``tolerance`` (relative). ``batch`` repeats/cuts the example batch for timing; ``threads``
    sets torch's intra-op threads while timing (default: unchanged); ``device`` the device timed on
    (default: the model's; cpu for a meta-device model, which is timed with random weights).
    ``timer(model, args, kwargs) -> float`` times one forward pass (default: wall clock, ms; not saved in JSON);
    ``max_probes`` bounds the number of pruned copies timed. ``method="table"`` plans from per-layer latency tables
    instead (``secateurs.selection.latency_table``): each Conv2d/Linear layer is timed alone on a width grid once,
    the strength is bisected on predicted latency, and only the chosen plan is timed (the prediction error is in
    ``plan.settings["latency"]``); ``table`` names a JSON file that keeps the measured layers between runs."""

    fraction: float
    batch: int | None = None
    threads: int | None = None
    repeats: int = 7
    warmup: int = 2
    device: str | None = None
    timer: Timer | None = field(default=None, compare=False)
    tolerance: float = 0.10
    max_probes: int = 10
    method: str = "measure"
    table: str | None = None
    kind = "latency"

    def __post_init__(self) -> None:
        f = self.fraction
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0.0 < float(f) <= 1.0:
            raise InvalidArgumentError(f"latency must be the fraction of measured latency KEPT, in (0, 1], got {f!r}")
        for name in ("batch", "threads"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise InvalidArgumentError(f"LatencyTarget.{name} must be a positive integer or None, got {v!r}")
        for name, low in (("repeats", 1), ("warmup", 0), ("max_probes", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise InvalidArgumentError(f"LatencyTarget.{name} must be an integer >= {low}, got {v!r}")
        if isinstance(self.tolerance, bool) or not isinstance(self.tolerance, (int, float)) \
                or not 0.0 < self.tolerance < 1.0:
            raise InvalidArgumentError(f"LatencyTarget.tolerance must be in (0, 1), got {self.tolerance!r}")
        if self.device is not None and not isinstance(self.device, str):
            raise InvalidTypeError(f"LatencyTarget.device must be a device name such as 'cuda:0', got {self.device!r}")
        if self.method not in ("measure", "table"):
            raise InvalidArgumentError(f"LatencyTarget.method must be 'measure' (time pruned copies) or 'table' (per-layer "
                                       f"lookup tables), got {self.method!r}")
        if self.table is not None and (not isinstance(self.table, str) or not self.table.endswith(".json")):
            raise InvalidArgumentError(f"LatencyTarget.table must be the path of a .json file, got {self.table!r}")
        if self.timer is not None and not callable(self.timer):
            raise InvalidTypeError("LatencyTarget.timer must be callable as timer(model, args, kwargs) -> float")

    def to_dict(self) -> dict[str, Any]:
        out = {"kind": self.kind, "fraction": float(self.fraction), "batch": self.batch, "threads": self.threads,
               "repeats": self.repeats, "warmup": self.warmup, "device": self.device, "tolerance": self.tolerance,
               "max_probes": self.max_probes, "method": self.method, "table": self.table}
        if self.timer is not None:
            out["timer"] = getattr(self.timer, "__name__", type(self.timer).__name__)  # a record; not restored
        return out


Target = Ratio | Budget | LatencyTarget
TARGETS: dict[str, type[Target]] = {"ratio": Ratio, "budget": Budget, "latency": LatencyTarget}


def target_from_dict(d: Mapping[str, Any]) -> Target:
    """The inverse of ``Target.to_dict`` (a ``timer`` recorded by name is not restored: wall clock is used)."""
    if not isinstance(d, Mapping) or d.get("kind") not in TARGETS:
        raise InvalidArgumentError(f"a target is a dict with kind one of {', '.join(TARGETS)}, got {d!r}")
    cls = TARGETS[str(d["kind"])]
    fields = {k: v for k, v in d.items() if k not in ("kind", "timer")}
    allowed = set(cls.__dataclass_fields__) - {"timer"}
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise InvalidArgumentError(f"unknown {d['kind']} target fields {unknown}; known: {sorted(allowed)}")
    return cls(**fields)
