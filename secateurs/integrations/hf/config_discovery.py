"""Which config fields of a ``PreTrainedModel`` class set which sizes: learned by rebuilding the class on the
meta device from perturbed configs.

Every integer field of the config (nested sub-configs included, as dotted paths like ``text_config.hidden_size``),
and every float field (a width given as a ratio of another: ``mlp_ratio``, ``hidden_expansion``), is doubled in turn, the class is built on the meta device from that config, and the parameter/buffer shapes and
the integer module attributes of the result are compared with those of the unperturbed build. A few fields that
modeling code reads with ``getattr(config, name, default)`` but that configs often leave out (``head_dim``) are
tried too. The result, a ``Sensitivity``, is cached per model class and config; nothing here knows a model family.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

#: fields never solved for: token ids, and switches whose value is not a size
_SKIP = re.compile(r".*(_token_id|_token_index|_token_ids|_id)$|.*seed$|^(chunk_size_feed_forward|output_attentions)$")
#: fields modeling code may read through ``getattr(config, name, default)``: tried when the config lacks them
LATENT = ("head_dim",)
MAX_FIELDS = 96
SENTINEL = 7919  # a prime no tiny or real width equals: a None field given it shows which sizes it sets


@dataclass
class Observed:
    """What one build of the class shows: tensor shapes (state dict names) and module attributes."""

    shapes: dict[str, tuple[int, ...]]
    ints: dict[str, int]  # "module.path:attr" -> value (ints, and ints inside tuples/lists as "attr[i]")
    floats: dict[str, float]


@dataclass
class Sensitivity:
    """For each config field path: its value and the observation of a build with it changed."""

    base: Observed
    values: dict[str, int | float]  # floats: ratio fields (``size_fields``)
    probes: dict[str, tuple[int | float, Observed]] = field(default_factory=dict)  # path -> (new value, observation)
    failed: dict[str, str] = field(default_factory=dict)  # path -> why no build was possible
    config: Any = None  # the config probed: the model's, plus the latent fields it reads, written explicitly
    written: dict[str, int] = field(default_factory=dict)  # latent fields to write with any rewrite
    structural: set[str] = field(default_factory=set)  # changing it changes the set of tensors (layer counts)


def is_config(obj: Any) -> bool:
    return hasattr(obj, "to_dict") and hasattr(obj, "model_type") and hasattr(obj, "__dict__")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def int_fields(config: Any, prefix: str = "", depth: int = 0) -> Iterator[tuple[str, int]]:
    """(dotted path, value) of every positive integer field of ``config`` and of its nested sub-configs; the
    elements of short integer lists (per-stage widths such as ``hidden_sizes``) as ``name[i]``."""
    for name, value in sorted(vars(config).items()):
        if name.startswith("_") or _SKIP.fullmatch(name):
            continue
        if is_config(value) and depth < 3:
            yield from int_fields(value, f"{prefix}{name}.", depth + 1)
        elif _is_int(value) and value > 0:
            yield f"{prefix}{name}", value
        elif isinstance(value, (list, tuple)) and 0 < len(value) <= 8 and all(_is_int(v) and v > 0 for v in value):
            yield from ((f"{prefix}{name}[{i}]", int(v)) for i, v in enumerate(value))


def _is_float(value: Any) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


def size_fields(config: Any, prefix: str = "", depth: int = 0) -> Iterator[tuple[str, int | float]]:
    """``int_fields``, then the positive float fields (and short float lists, ``mlp_ratio[i]``): a width may be a
    float times another (``int(dim * mlp_ratio)``). Most floats (dropouts, epsilons) move no size, so their probes
    change nothing and they never enter a solve."""
    yield from int_fields(config, prefix, depth)
    yield from _float_fields(config, prefix, depth)


def _float_fields(config: Any, prefix: str, depth: int) -> Iterator[tuple[str, float]]:
    for name, value in sorted(vars(config).items()):
        if name.startswith("_") or _SKIP.fullmatch(name):
            continue
        if is_config(value) and depth < 3:
            yield from _float_fields(value, f"{prefix}{name}.", depth + 1)
        elif _is_float(value):
            yield f"{prefix}{name}", value
        elif isinstance(value, (list, tuple)) and 0 < len(value) <= 8 and all(_is_float(v) for v in value):
            yield from ((f"{prefix}{name}[{i}]", float(v)) for i, v in enumerate(value))


def _split(part: str) -> tuple[str, int | None]:
    name, _, index = part.partition("[")
    return name, int(index[:-1]) if index else None


def get_field(config: Any, path: str) -> Any:
    obj = config
    for part in path.split("."):
        name, index = _split(part)
        obj = getattr(obj, name, None)
        if index is not None:
            obj = obj[index] if isinstance(obj, (list, tuple)) and index < len(obj) else None
    return obj


def set_field(config: Any, path: str, value: Any) -> None:
    """Set a dotted field path (``text_config.hidden_size``, ``hidden_sizes[2]``); lists are replaced, not mutated."""
    *parents, last = path.split(".")
    obj = config
    for part in parents:
        obj = getattr(obj, part)
    name, index = _split(last)
    if index is None:
        setattr(obj, name, value)
        return
    items = list(getattr(obj, name))
    items[index] = value
    setattr(obj, name, type(getattr(obj, name))(items))


def observe(model: nn.Module) -> Observed:
    shapes = {k: tuple(v.shape) for k, v in model.state_dict(keep_vars=True).items()}
    # buffers outside the state dict (RoPE's inv_freq) are rebuilt from the config too: a config that gives the
    # same weights with another head size (8 heads of 18 for 6 of 24) rebuilds them wrong
    shapes.update({k: tuple(v.shape) for k, v in model.named_buffers() if k not in shapes})
    ints: dict[str, int] = {}
    floats: dict[str, float] = {}
    for path, m in model.named_modules():
        for attr, value in vars(m).items():
            if attr.startswith("_") or isinstance(value, bool):
                continue
            key = f"{path}:{attr}"
            if isinstance(value, int):
                ints[key] = value
            elif isinstance(value, float):
                floats[key] = value
            elif isinstance(value, (tuple, list)) and 0 < len(value) <= 16 and all(
                    isinstance(v, int) and not isinstance(v, bool) for v in value):
                ints.update({f"{key}[{i}]": int(v) for i, v in enumerate(value)})
    return Observed(shapes, ints, floats)


def build_meta(cls: type, config: Any) -> nn.Module:
    """``cls(config)`` with every tensor on the meta device (no memory, no initialisation cost)."""
    with torch.device("meta"):
        return cls(config)


def reloaded_config(config: Any) -> Any:
    """The config as ``from_pretrained`` would read it back from ``config.json`` (defaults recomputed, validated)."""
    fresh = type(config).from_dict(config.to_dict())
    if callable(getattr(fresh, "validate", None)):
        fresh.validate()
    return fresh


def _key(cls: type, config: Any) -> str:
    return f"{cls.__module__}.{cls.__qualname__}:{config.to_json_string(use_diff=False)}"


_CACHE: dict[str, Sensitivity] = {}


def sensitivity(cls: type, config: Any) -> Sensitivity:
    """Builds of ``cls`` from ``config`` with each integer field doubled (cached per class and config)."""
    key = _key(cls, config)
    if key not in _CACHE:
        if len(_CACHE) > 32:
            _CACHE.clear()
        _CACHE[key] = _discover(cls, config)
    return _CACHE[key]


def _discover(cls: type, config: Any) -> Sensitivity:
    base = observe(build_meta(cls, copy.deepcopy(config)))
    config, written = _with_latent(cls, config, base)
    values: dict[str, int | float] = dict(size_fields(config))
    result = Sensitivity(base, values, config=config, written=written)
    for path, value in list(values.items())[:MAX_FIELDS]:
        _probe(cls, config, result, path, value)
    _probe_together(cls, config, result)
    result.written = {k: v for k, v in written.items()  # only those the model reads
                      if k in result.probes and result.probes[k][1] != base}
    return result


def _with_latent(cls: type, config: Any, base: Observed) -> tuple[Any, dict[str, int]]:
    """``config`` with each ``LATENT`` field it lacks set to the value the model derives for it, when that builds
    the same model: probes then see the field fixed (``num_attention_heads`` no longer moves ``head_dim``). Fields
    left ``None`` whose value, when given, becomes a tensor size (GPT-2's ``n_inner``, ``4 x n_embd`` when None)
    are set the same way (``_unset_sizes``)."""
    written: dict[str, int] = {}
    for name in LATENT:
        if get_field(config, name) is not None or _derived(config) <= 0:
            continue
        trial = copy.deepcopy(config)
        set_field(trial, name, _derived(config))
        try:
            same = observe(build_meta(cls, trial)) == base
        except Exception:  # the class rejects the field: leave it out
            same = False
        if same:
            config, written[name] = trial, _derived(config)
    for name, value in _unset_sizes(cls, config, base):
        config = copy.deepcopy(config)
        set_field(config, name, value)
        written[name] = value
    return config, written


def _unset_sizes(cls: type, config: Any, base: Observed) -> Iterator[tuple[str, int]]:
    """(field, value) for each top-level field left ``None`` that sets a tensor size: given ``SENTINEL``, some dims
    take that value; given the value those dims had, the class builds exactly as before."""
    for name, value in sorted(vars(config).items()):
        if value is not None or name.startswith("_") or _SKIP.fullmatch(name):
            continue
        trial = copy.deepcopy(config)
        try:
            set_field(trial, name, SENTINEL)  # typed configs may refuse an int there: not a size
            seen = observe(build_meta(cls, trial))
        except Exception:  # noqa: S112  (the class rejects an int there: not a size)
            continue
        if set(seen.shapes) != set(base.shapes):
            continue
        before = {base.shapes[k][d] for k, shape in seen.shapes.items() for d, n in enumerate(shape)
                  if n == SENTINEL and len(base.shapes[k]) == len(shape)}
        if len(before) != 1:
            continue
        size = before.pop()
        try:
            set_field(trial, name, size)
            same = observe(build_meta(cls, trial)) == base
        except Exception:  # noqa: S112
            continue
        if same:
            yield name, size


def _probe(cls: type, config: Any, result: Sensitivity, path: str, value: int | float) -> None:
    """Build with ``path`` doubled (tripled when doubling adds or removes tensors, as when it makes two widths
    equal that a projection sits between) and record what moved."""
    for factor in (2, 3):
        changed = copy.deepcopy(config)
        set_field(changed, path, factor * value)
        try:
            seen = observe(build_meta(cls, changed))
        except Exception as exc:  # foreign code rejected the value: the field cannot be solved for
            result.failed[path] = f"{type(exc).__name__}: {str(exc).strip()[:160]}"
            return
        if set(seen.shapes) == set(result.base.shapes):
            result.structural.discard(path)
            result.probes[path] = (factor * value, seen)
            return
        result.structural.add(path)


def _probe_together(cls: type, config: Any, result: Sensitivity) -> None:
    """Fields that change the set of tensors alone but not together with the other fields of the same value (OPT's
    ``hidden_size`` and ``word_embed_proj_dim``: a projection appears when they differ) are one unknown, probed
    jointly under the path ``"a+b"``."""
    by_value: dict[int | float, list[str]] = {}
    for path in sorted(p for p in result.structural if _is_int(result.values[p])):
        by_value.setdefault(result.values[path], []).append(path)
    for value, paths in by_value.items():
        if len(paths) < 2:
            continue
        changed = copy.deepcopy(config)
        for path in paths:
            set_field(changed, path, 2 * value)
        try:
            seen = observe(build_meta(cls, changed))
        except Exception:  # noqa: S112  (no joint build: these fields stay unsolved)
            continue
        if set(seen.shapes) == set(result.base.shapes):
            joint = "+".join(paths)
            result.values[joint] = value
            result.probes[joint] = (2 * value, seen)


def _derived(config: Any) -> int:
    """The head size a config without ``head_dim`` implies (``hidden_size // num_attention_heads``)."""
    hidden, heads = get_field(config, "hidden_size"), get_field(config, "num_attention_heads")
    if not _is_int(hidden) or not _is_int(heads) or heads <= 0:
        return 0  # per-stage lists (SegFormer): no single head size to derive
    return max(1, hidden // heads)


def config_digest(config: Any) -> str:
    """A short stable description of the int fields (for messages and tests)."""
    return json.dumps(dict(int_fields(config)), sort_keys=True)
