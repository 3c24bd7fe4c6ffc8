"""PruneConfig: every option of a pruning, one frozen typed value shared by ``plan``, ``prune``, the CLI and plans.

``sc.plan(model, x, config)`` and ``sc.prune(model, x, config)`` take it; keyword arguments
(``sc.prune(model, x, ratio=0.3, importance="wanda")``) only build one. A plan carries the config it was made
with (``plan.config``), so ``sc.plan(model, x, plan.config)`` on the same weights (and calibration data) makes
the same plan. ``to_json``/``from_json`` write a versioned document of allowlisted fields; reading one never
imports or runs code. The CLI flags of ``secateurs prune`` are generated from the fields' metadata.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from secateurs.errors import InvalidArgumentError, InvalidTypeError
from secateurs.targets import Budget, LatencyTarget, Ratio, Target, target_from_dict

CONFIG_FORMAT = 1
SCOPES = ("local", "global")
#: ``importance``/``compensate`` left to secateurs: resolved when planning (``secateurs.planning.defaults``) to the
#: best measured data-aware choice for the model kind when calibration data is given, else ``l2`` / none
AUTO = "auto"
NORMALIZERS = ("mean", "max", "standardize", "none")
CHECKS = (True, False, "full")


@dataclass(frozen=True)
class CriterionSpec:
    """A criterion named in a file: its registry name and the fields to set on what the registry builds
    (``{"name": "taylor", "options": {"reduce": "unit"}}``); ``secateurs.scoring.get_criterion`` builds it."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)


def _opt(help: str, cli: str | None = None, **more: Any) -> dict[str, Any]:
    return {"help": help, "cli": cli, **more}


@dataclass(frozen=True)
class PruneConfig:
    """Every pruning option. ``target=None`` means ``Ratio(0.5)`` (or, with ``drop_layers``, no width pruning)."""

    target: Target | None = field(default=None, metadata=_opt("what to aim for: Ratio, Budget or LatencyTarget"))
    importance: str | Any = field(default=AUTO, metadata=_opt(
        "importance criterion (l1, l2, taylor, wanda, fluctuation, ...); auto (default): the best measured data-aware "
        "criterion for the model kind when calibration data is given, else l2", "--importance"))
    scope: str = field(default="local", metadata=_opt(
        "rank units per group (local: every layer the same width) or across groups of a kind (global)", "--scope",
        choices=SCOPES))
    normalize: str | None = field(default=None, metadata=_opt(
        "per-group score normalisation of global ranking (default: the criterion's, usually mean)", "--normalize",
        choices=NORMALIZERS))
    ignore: tuple[str | type, ...] = field(default=(), metadata=_opt(
        "module paths or globs never pruned (repeatable), e.g. fc or 'layer3.*'", "--ignore", repeat=True))
    overrides: Mapping[str, float] = field(default_factory=dict, metadata=_opt(
        "per-module ratios: pattern or group:NAME -> fraction removed (CLI: --overrides FILE / --sensitivity DIR)"))
    round_to: int = field(default=1, metadata=_opt("keep a multiple of this many units per group", "--round-to"))
    min_keep: int = field(default=1, metadata=_opt("never keep fewer units per group", "--min-keep"))
    max_ratio: float | None = field(default=None, metadata=_opt("remove at most this fraction of any group",
                                                                "--max-ratio"))
    valid_heads: bool = field(default=True, metadata=_opt(
        "keep only head counts the model's own config accepts (Hugging Face: e.g. LlamaConfig wants hidden_size "
        "divisible by num_attention_heads), rounding to the nearest, so save_pretrained output reloads; false: the "
        "counts asked",
        "--valid-heads"))
    seed: int = field(default=0, metadata=_opt("seed of the random criterion and of tie-breaking", "--seed"))
    drop_layers: int | None = field(default=None, metadata=_opt(
        "also remove N whole residual blocks (decoder layers), scored on the calibration data", "--drop-layers"))
    layer_importance: str | None = field(default=None, metadata=_opt(
        "how drop_layers scores blocks: block_influence (default) or angular", "--layer-importance"))
    merge_layers: int | None = field(default=None, metadata=_opt(
        "remove N whole blocks by merging runs of consecutive ones into one (LaCo), chosen on the calibration data",
        "--merge-layers"))
    rotate: bool = field(default=False, metadata=_opt(
        "SliceGPT: rotate the residual stream into the principal axes of calibration activations before pruning "
        "the hidden size (ratio hidden=...), so the dimensions removed carry the least variance", "--rotate"))
    rotate_per_layer: bool = field(default=False, metadata=_opt(
        "with rotate: one rotation per stretch of the stream with SliceGPT's shortcut matrices (not a stock "
        "architecture: save with secateurs.save, reload with secateurs.load)", "--rotate-per-layer"))
    compensate: str | Any | None = field(default=AUTO, metadata=_opt(
        "refit the layers reading pruned channels from calibration data: lstsq, bias or none; auto (default): the "
        "model kind's measured choice when importance is auto and calibration data is given, else none",
        "--compensate"))
    check: bool | str = field(default=True, metadata=_opt(
        "verify against the masked original: true, false or full (also check exact groups on a copy)", "--check"))
    tolerance: float | None = field(default=None, metadata=_opt(
        "verification tolerance (relative error; default by dtype)", "--tolerance"))

    def __post_init__(self) -> None:
        _validate(self)

    # -- building ---------------------------------------------------------------------------------------------
    @classmethod
    def build(cls, base: PruneConfig | None = None, **options: Any) -> PruneConfig:
        """``base`` (or the defaults) with ``options`` set. Besides the field names, ``ratio=``, ``macs=``,
        ``params=`` and ``latency=`` set the target, and ``uniform=True|False`` is ``scope="local"|"global"``."""
        if base is not None and not isinstance(base, PruneConfig):
            raise InvalidTypeError(f"config must be a secateurs.PruneConfig, got {type(base).__name__}; pass options "
                                   "as keywords (ratio=0.3, importance='l2') or build one with PruneConfig(...)")
        values = _shorthands(options)
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise InvalidTypeError(f"unknown pruning option(s) {unknown}; options are ratio, macs, params, latency, "
                                   f"uniform and {', '.join(f for f in cls.__dataclass_fields__ if f != 'target')}")
        return dataclasses.replace(base or cls(), **values)

    # -- JSON -------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": CONFIG_FORMAT}
        for f in dataclasses.fields(self):
            out[f.name] = _encode(f.name, getattr(self, f.name))
        return out

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PruneConfig:
        if not isinstance(d, Mapping):
            raise InvalidTypeError(f"a PruneConfig document is a JSON object, got {type(d).__name__}")
        if d.get("format") != CONFIG_FORMAT:
            raise InvalidArgumentError(f"not a PruneConfig of format {CONFIG_FORMAT} (found {d.get('format')!r})")
        unknown = sorted(set(d) - set(cls.__dataclass_fields__) - {"format"})
        if unknown:
            raise InvalidArgumentError(f"unknown PruneConfig fields {unknown}; known: {sorted(cls.__dataclass_fields__)}")
        values = {k: _decode(k, v) for k, v in d.items() if k != "format"}
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> PruneConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidArgumentError(f"PruneConfig JSON does not parse: {exc}") from exc
        return cls.from_dict(data)

    def __hash__(self) -> int:
        return hash(self.to_json())

    # -- reading ----------------------------------------------------------------------------------------------
    def width_target(self) -> Target:
        """The target of width pruning: ``Ratio(0.5)`` by default, nothing (ratio 0) when only layers are dropped."""
        if self.target is not None:
            return self.target
        return Ratio(0.0) if self.drop_layers or self.merge_layers else Ratio(0.5)

    def removes_layers(self) -> bool:
        """Whether whole blocks go (dropped or merged away)."""
        return bool(self.drop_layers or self.merge_layers)


_TARGET_WORDS = ("ratio", "macs", "params", "latency")


def _shorthands(options: dict[str, Any]) -> dict[str, Any]:
    values = {k: v for k, v in options.items() if not (k in _TARGET_WORDS and v is None)}
    given = [k for k in _TARGET_WORDS if k in values]
    if len(given) > 1 and set(given) != {"macs", "params"}:
        raise InvalidArgumentError(f"pass one target, not {' and '.join(given)}: ratio= removes a fraction, macs=/"
                                   "params= (together: a Budget) and latency= keep one, and each sets the ratios itself")
    if given and values.get("target") is not None:
        raise InvalidArgumentError(f"pass either target= or {given[0]}=, not both")
    if given:
        v = {k: values.pop(k) for k in given}
        values["target"] = (Ratio(v["ratio"]) if "ratio" in v else _latency(v["latency"]) if "latency" in v
                            else Budget(v.get("macs"), v.get("params")))
    if "uniform" in values:
        uniform = values.pop("uniform")
        if uniform is not None:
            if not isinstance(uniform, bool):
                raise InvalidArgumentError(f"uniform must be True, False or None, got {uniform!r}")
            scope = "local" if uniform else "global"
            if values.get("scope", scope) != scope:
                raise InvalidArgumentError("uniform=True keeps every layer the same width, which global ranking does "
                                           "not; drop scope='global' or pass uniform=False")
            values["scope"] = scope
    if "ignore" in values:
        values["ignore"] = _ignore_tuple(values["ignore"])
    return values


def _latency(v: Any) -> LatencyTarget:
    if isinstance(v, LatencyTarget):
        return v
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InvalidTypeError(f"latency must be a fraction kept (float) or a LatencyTarget, got {type(v).__name__}")
    return LatencyTarget(float(v))


def _ignore_tuple(ignore: Any) -> tuple[str | type, ...]:
    if ignore is None:
        return ()
    if isinstance(ignore, (str, type)):
        return (ignore,)
    try:
        return tuple(ignore)
    except TypeError:
        raise InvalidTypeError(f"ignore must be a module name, a pattern, an nn.Module type or a list of them, "
                               f"got {type(ignore).__name__}") from None


def _validate(c: PruneConfig) -> None:
    if c.target is not None and not isinstance(c.target, (Ratio, Budget, LatencyTarget)):
        raise InvalidTypeError(f"target must be Ratio, Budget or LatencyTarget, got {type(c.target).__name__}; "
                               "or pass ratio=/macs=/params=/latency=")
    if not isinstance(c.importance, (str, CriterionSpec)) and not hasattr(c.importance, "scores"):
        raise InvalidTypeError(f"importance must be a criterion name or an object with .scores(), "
                               f"got {type(c.importance).__name__}")
    if c.scope not in SCOPES:
        raise InvalidArgumentError(f"scope must be one of {', '.join(SCOPES)}, got {c.scope!r}")
    if c.normalize is not None and c.normalize not in NORMALIZERS:
        raise InvalidArgumentError(f"unknown normalize={c.normalize!r}; choose one of {', '.join(NORMALIZERS)}")
    object.__setattr__(c, "ignore", _ignore_tuple(c.ignore))
    for item in c.ignore:
        if not isinstance(item, (str, type)):
            raise InvalidTypeError(f"ignore entries must be module names, glob patterns or nn.Module types, got {item!r}")
    if not isinstance(c.overrides, Mapping):
        raise InvalidTypeError(f"overrides must be a dict of module pattern -> ratio, got {type(c.overrides).__name__}")
    for key, r in c.overrides.items():
        if not isinstance(key, str):
            raise InvalidTypeError(f"overrides keys must be module names or glob patterns, got {key!r}")
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0.0 <= float(r) < 1.0:
            raise InvalidArgumentError(f"overrides[{key!r}] must be a ratio in [0, 1) (the fraction removed), got {r!r}")
    object.__setattr__(c, "overrides", {str(k): float(v) for k, v in c.overrides.items()})
    for name in ("round_to", "min_keep"):
        v = getattr(c, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InvalidArgumentError(f"{name} must be a positive integer, got {v!r}")
    if not isinstance(c.valid_heads, bool):
        raise InvalidTypeError(f"valid_heads must be True or False, got {c.valid_heads!r}")
    if isinstance(c.seed, bool) or not isinstance(c.seed, int):
        raise InvalidTypeError(f"seed must be an integer, got {c.seed!r}")
    if c.max_ratio is not None and (isinstance(c.max_ratio, bool) or not isinstance(c.max_ratio, (int, float))
                                    or not 0.0 < float(c.max_ratio) < 1.0):
        raise InvalidArgumentError(f"max_ratio must be a number in (0, 1) (the most of a group removed), got {c.max_ratio!r}")
    if c.drop_layers is not None and (isinstance(c.drop_layers, bool) or not isinstance(c.drop_layers, int)
                                      or c.drop_layers < 0):
        raise InvalidTypeError(f"drop_layers must be a non-negative integer (the number of blocks removed), "
                               f"got {c.drop_layers!r}")
    if c.layer_importance is not None and not isinstance(c.layer_importance, str):
        raise InvalidTypeError(f"layer_importance must be a criterion name, got {c.layer_importance!r}")
    if c.layer_importance is not None and not c.drop_layers:
        raise InvalidArgumentError(f"layer_importance={c.layer_importance!r} is given without drop_layers=N; pass "
                                   "drop_layers= the number of blocks to remove")
    _validate_llm_options(c)
    if isinstance(c.target, Budget) and c.drop_layers:
        raise InvalidArgumentError("drop_layers= cannot be combined with a macs=/params= budget yet (the budget "
                                   "solver does not count dropped blocks); pass ratio= for the width part")
    if isinstance(c.target, LatencyTarget) and c.drop_layers:
        raise InvalidArgumentError("drop_layers= cannot be combined with a latency= target yet (the latency search "
                                   "does not time dropped blocks); pass ratio= for the width part")
    if isinstance(c.compensate, str) and c.compensate.lower() == "none":
        object.__setattr__(c, "compensate", None)
    if c.check not in CHECKS or (c.check is not True and c.check is not False and c.check != "full"):
        raise InvalidArgumentError(f"check must be True, False or 'full', got {c.check!r}")
    if c.tolerance is not None and (isinstance(c.tolerance, bool) or not isinstance(c.tolerance, (int, float))
                                    or not (c.tolerance > 0 and math.isfinite(c.tolerance))):
        raise InvalidArgumentError(f"tolerance must be a positive number, got {c.tolerance!r}")


def _validate_llm_options(c: PruneConfig) -> None:
    if c.merge_layers is not None and (isinstance(c.merge_layers, bool) or not isinstance(c.merge_layers, int)
                                       or c.merge_layers < 0):
        raise InvalidTypeError(f"merge_layers must be a non-negative integer (the number of blocks removed by merging), "
                               f"got {c.merge_layers!r}")
    if c.merge_layers and c.drop_layers:
        raise InvalidArgumentError("pass drop_layers= or merge_layers=, not both: each chooses the blocks to remove "
                                   "its own way")
    if c.merge_layers and not isinstance(c.target, (Ratio, type(None))):
        raise InvalidArgumentError("merge_layers= cannot be combined with a macs=/params=/latency= target yet; pass "
                                   "ratio= for the width part")
    for name in ("rotate", "rotate_per_layer"):
        if not isinstance(getattr(c, name), bool):
            raise InvalidTypeError(f"{name} must be True or False, got {getattr(c, name)!r}")
    if c.rotate_per_layer and not c.rotate:
        raise InvalidArgumentError("rotate_per_layer=True chooses how rotate=True rotates: pass rotate=True too")
    if c.rotate and not isinstance(c.target, (Ratio, type(None))):
        raise InvalidArgumentError("rotate=True slices the hidden size by a ratio: pass ratio={'hidden': r} (with any "
                                   "other kinds), not a macs=/params=/latency= target")


# -- JSON encoding of the fields that are not plain values ----------------------------------------------------------
def _encode(name: str, value: Any) -> Any:
    if name == "target":
        return None if value is None else value.to_dict()
    if name == "importance":
        return _encode_criterion(value)
    if name == "ignore":
        return [v if isinstance(v, str) else {"type": f"{v.__module__}.{v.__qualname__}"} for v in value]
    if name == "overrides":
        return dict(value)
    if name == "compensate" and value is not None and not isinstance(value, str):
        return {k: getattr(value, k) for k in ("method", "ridge", "add_bias") if hasattr(value, k)}
    return value


def _encode_criterion(value: Any) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, CriterionSpec):
        return {"name": value.name, "options": dict(value.options)}
    name = str(getattr(value, "name", type(value).__name__))
    options = {}
    if dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            if f.init and f.name not in ("name", "needs_data", "needs_grads") and isinstance(v, (int, float, str, bool)):
                options[f.name] = v
    return {"name": name, "options": options}


def _decode(name: str, value: Any) -> Any:
    if name == "target":
        return None if value is None else target_from_dict(value)
    if name == "importance" and isinstance(value, Mapping):
        if not isinstance(value.get("name"), str) or not isinstance(value.get("options", {}), Mapping):
            raise InvalidArgumentError(f"importance must be a name or {{'name': ..., 'options': {{...}}}}, got {value!r}")
        return CriterionSpec(value["name"], dict(value.get("options", {})))
    if name == "ignore":
        if not isinstance(value, list):
            raise InvalidTypeError(f"ignore must be a list, got {type(value).__name__}")
        return tuple(_decode_ignored(v) for v in value)
    return value


def _decode_ignored(v: Any) -> str | type:
    """A module name, or a class named as ``{"type": "module.QualName"}`` of a module already imported (reading a
    config never imports anything)."""
    if isinstance(v, str):
        return v
    if not isinstance(v, Mapping) or not isinstance(v.get("type"), str):
        raise InvalidArgumentError(f"ignore entries are names or {{'type': 'module.Class'}}, got {v!r}")
    path = v["type"]
    for cut in range(len(path.split(".")) - 1, 0, -1):
        parts = path.split(".")
        module = sys.modules.get(".".join(parts[:cut]))
        if module is None:
            continue
        obj: Any = module
        for attr in parts[cut:]:
            obj = getattr(obj, attr, None)
        if isinstance(obj, type):
            return obj
    raise InvalidArgumentError(f"ignored type {path!r} is not among the imported classes; import its module before "
                               "reading the config, or ignore modules by name")


def with_options(cls: type[Any], config: Any, options: dict[str, Any], what: str) -> Any:
    """``config`` (or ``cls()``) with ``options`` set, after refusing names that are not fields of ``cls``; the
    result's ``validate()`` is called. ``what`` names the options in the error (``"recover"``, ``"shear"``)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise InvalidArgumentError(f"unknown {what} option(s) {unknown}; known: {sorted(names)}")
    cfg = dataclasses.replace(config, **options) if config is not None else cls(**options)
    cfg.validate()
    return cfg

