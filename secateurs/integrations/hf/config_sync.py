"""Write the pruned sizes of a ``PreTrainedModel`` into its config, found by discovery (no per-family tables).

After surgery (and after layer dropping rewrote the layer count), ``sync_config_(model)``:

1. learns which config fields set which sizes (``config_discovery.sensitivity``: meta-device builds of the
   class from configs with one field doubled; cached);
2. solves for the field values that give the pruned tensor shapes and the module attributes surgery changed
   (``config_solve.solve``);
3. rebuilds the class on the meta device from the new config as ``from_pretrained`` would read it back
   (``to_dict`` -> ``from_dict``, validated) and compares every tensor shape, every integer attribute surgery
   changed, and every float attribute (a softmax scale transformers would recompute from a pruned ``head_dim``);
4. when they all match, writes the fields into ``model.config`` and sets the integer module attributes the new
   config moves (``num_heads``, ``split_size``, ... that no handler refreshed) to the rebuilt values.

Otherwise the config is left as it was and a ``StockConfigWarning`` says why: the pruned model still runs, and
``secateurs.save``/``secateurs.load`` rebuild it; ``save_pretrained()`` output would not.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from secateurs.errors import StockConfigWarning
from secateurs.integrations.hf.config_discovery import (
    Observed,
    build_meta,
    observe,
    reloaded_config,
    sensitivity,
    set_field,
)
from secateurs.integrations.hf.config_solve import observables, solve

MAX_TRIES = 4  # exact solutions checked by a rebuild, best first


@dataclass
class ConfigRewrite:
    """The config fields that describe a pruned model, or why none do."""

    values: dict[str, int | float] = field(default_factory=dict)  # config path -> new value
    attributes: dict[str, int] = field(default_factory=dict)  # "module:attr" -> value a fresh build has
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def config_rewrite(model: nn.Module) -> ConfigRewrite:
    """The rewrite of ``model.config`` that makes ``type(model)(config)`` build ``model``'s (pruned) shapes."""
    config: Any = getattr(model, "config", None)
    cls = type(model)
    pruned = observe(model)
    try:
        base = observe(build_meta(cls, copy.deepcopy(config)))
    except Exception as exc:  # foreign code: report, never fail the surgery
        return ConfigRewrite(problems=[f"{cls.__name__} cannot be built from its config on the meta device "
                                       f"({_last_line(exc)})"])
    missing = sorted(set(pruned.shapes) - set(base.shapes))  # a fresh build may have more (BertModel's pooler)
    if missing:
        return ConfigRewrite(problems=[f"the model's tensors differ from a fresh {cls.__name__} "
                                       f"({', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''})"])
    if not _matches(pruned, base, base):
        return ConfigRewrite()  # nothing the config sets has changed
    try:
        sens = sensitivity(cls, config)
    except Exception as exc:  # a config this code does not understand: report, never fail the surgery
        return ConfigRewrite(problems=[f"config discovery failed on {type(config).__name__} ({_last_line(exc)})"])
    kept_floats = [k for k, v in pruned.floats.items() if sens.base.floats.get(k) == v]
    solution = solve(sens, observables(pruned), kept_floats)
    if solution.problems:
        return ConfigRewrite(problems=solution.problems)
    first: ConfigRewrite | None = None
    for values in (solution.alternatives or [solution.values])[:MAX_TRIES]:
        rewrite = _checked(cls, config, {**sens.written, **values}, pruned, base)  # latent fields written too
        if rewrite.ok:
            return rewrite
        first = first or rewrite
    return first or ConfigRewrite()


def _checked(cls: type, config: Any, values: dict[str, int | float], pruned: Observed, base: Observed) -> ConfigRewrite:
    """``values`` written into a copy of ``config``, read back as from_pretrained would, built and compared."""
    new_config = copy.deepcopy(config)
    for path, value in values.items():
        set_field(new_config, path, value)
    try:
        fresh = observe(build_meta(cls, reloaded_config(new_config)))
    except Exception as exc:
        return ConfigRewrite(values, problems=[f"transformers rejects the rewritten config "
                                               f"({_fields(values)}: {_last_line(exc)})"])
    problems = _matches(pruned, base, fresh)
    if problems:
        return ConfigRewrite(values, problems=[f"a {cls.__name__} built from a config with {_fields(values)} "
                                               "differs: " + "; ".join(problems)])
    return ConfigRewrite(values, _stale(pruned, base, fresh))


def _matches(pruned: Observed, base: Observed, fresh: Observed) -> list[str]:
    """What a build from the new config would get wrong: shapes, integer attributes surgery set, float attributes."""
    bad = [f"{k} {fresh.shapes.get(k)} vs pruned {v}" for k, v in pruned.shapes.items() if fresh.shapes.get(k) != v]
    bad += [f"{k} = {fresh.ints.get(k)} vs pruned {v}" for k, v in pruned.ints.items()
            if v != base.ints.get(k) and k in fresh.ints and fresh.ints[k] != v]
    for k, v in pruned.floats.items():
        new = fresh.floats.get(k)
        if new is not None and abs(new - v) > 1e-9 * max(abs(v), 1e-30) and (v != base.floats.get(k) or new != v):
            bad.append(f"{k} would be {new:.6g} instead of {v:.6g} (transformers recomputes it from a pruned size, "
                       "as an attention scale from a pruned head_dim)")
    return bad[:4] + ([f"and {len(bad) - 4} more"] if len(bad) > 4 else [])


def _stale(pruned: Observed, base: Observed, fresh: Observed) -> dict[str, int]:
    """Integer attributes the new config moves that surgery left at their old value."""
    return {k: fresh.ints[k] for k, v in pruned.ints.items()
            if k in fresh.ints and k in base.ints and v == base.ints[k] != fresh.ints[k]}


_COLLECT: ContextVar[list[ConfigRewrite] | None] = ContextVar("secateurs_hf_config_collect", default=None)


@contextlib.contextmanager
def collecting() -> Iterator[list[ConfigRewrite]]:
    """Within the block, ``sync_config_`` appends its rewrites to the list yielded instead of warning (dry runs)."""
    found: list[ConfigRewrite] = []
    token = _COLLECT.set(found)
    try:
        yield found
    finally:
        _COLLECT.reset(token)


def sync_config_(model: nn.Module) -> ConfigRewrite:
    """Write the rewrite of ``config_rewrite`` into ``model.config`` and its modules; warn when there is none."""
    config: Any = getattr(model, "config", None)
    if config is None:
        return ConfigRewrite()
    rewrite = config_rewrite(model)
    collector = _COLLECT.get()
    if collector is not None:
        collector.append(rewrite)
    if not rewrite.ok and collector is None:
        warnings.warn(f"pruned {getattr(config, 'model_type', type(model).__name__)} model: "
                      + "; ".join(rewrite.problems) + ". The pruned model runs, but its config cannot describe it, so a "
                      "save_pretrained() checkpoint will not rebuild it with the stock class; save with "
                      "secateurs.save() and rebuild with secateurs.load().", StockConfigWarning, stacklevel=2)
    if not rewrite.ok:
        return rewrite
    for path, value in rewrite.values.items():
        set_field(config, path, value)
    modules = dict(model.named_modules())
    for key, value in rewrite.attributes.items():
        path, attr = key.split(":", 1)
        _set_attribute(modules[path], attr, value)
    return rewrite


def sync_outermost_config_(model: nn.Module, hints: dict[str, Any]) -> None:
    """``sync_config_`` for the outermost ``PreTrainedModel`` of the model being pruned (``hints["root"]``); inner
    ones (``LlamaModel`` inside ``LlamaForCausalLM``, a vision tower) share its config or a sub-config of it, which
    the outermost one rewrites, so they do nothing."""
    from transformers import PreTrainedModel

    root, path = hints.get("root"), hints.get("path", "")
    if isinstance(root, nn.Module) and path:
        parts = path.split(".")
        modules = dict(root.named_modules())
        if any(isinstance(modules.get(".".join(parts[:i])), PreTrainedModel) for i in range(len(parts))):
            return
    sync_config_(model)


def _set_attribute(module: nn.Module, attr: str, value: int) -> None:
    if attr.endswith("]"):
        name, _, index = attr[:-1].partition("[")
        items = list(getattr(module, name))
        items[int(index)] = value
        old = getattr(module, name)
        setattr(module, name, type(old)(items) if isinstance(old, (tuple, list)) else items)
    else:
        setattr(module, attr, value)


def _fields(values: dict[str, int | float]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(values.items())) or "no change"


def _last_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1][:200] if text else type(exc).__name__


__all__ = ["ConfigRewrite", "collecting", "config_rewrite", "sync_config_", "sync_outermost_config_"]
