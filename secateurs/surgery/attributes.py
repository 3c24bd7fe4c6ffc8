"""Write the module attributes a plan rewrites (``Plan.attributes``), checking each still holds its recorded value.

The values come from ``graph/solve.py``: the attributes forward() computes pruned sizes from (``num_heads``,
``head_dim``, a split width, an element of a shape tuple, a field of the module's ``config``). ``apply_plan`` calls this inside its transaction, so a
failure restores the model; ``rebuild_original`` writes the values from before pruning back.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from secateurs.errors import ApplyError
from secateurs.plans import Plan


def attribute_owners(model: nn.Module, plan: Plan) -> list[nn.Module]:
    """The modules whose attributes ``plan`` rewrites (by their names after the plan's dropped layers are gone)."""
    modules = dict(model.named_modules(remove_duplicate=False))
    out = []
    for path in plan.attributes:
        where = plan.renamed(path) if plan.dropped_layers else path
        if where is not None and where in modules:
            out.append(modules[where])
    return out


def write_attributes_(model: nn.Module, plan: Plan, *, restore: bool = False, configs: bool | None = None) -> None:
    """Set every attribute of ``plan.attributes`` (``restore``: of ``plan.attributes_before``). ``configs``: only the
    fields of config objects (True), only the others (False), or all (None). Surgery writes config fields after the
    surgery handlers, which rebuild a config from the pruned shapes (transformers) and may have written them
    already: a field a handler changed is left as the handler wrote it."""
    table, expected = (plan.attributes_before, plan.attributes) if restore else (plan.attributes, plan.attributes_before)
    modules = dict(model.named_modules(remove_duplicate=False))
    for path, values in table.items():
        where = plan.renamed(path) if plan.dropped_layers and not restore else path
        if where is None:
            continue  # the block was dropped whole
        module = modules.get(where)
        if module is None:
            raise ApplyError(f"plan rewrites attributes of module {where!r}, which this model does not have: the "
                             "plan was made for another model")
        for name, value in values.items():
            if configs is not None and ("." in name) != configs:
                continue
            owner, field = _owner(module, name)
            if owner is None or field not in vars(owner):
                raise ApplyError(f"plan rewrites attribute {name!r} of {where!r} ({type(module).__name__}), which it "
                                 "does not have: the plan was made for another model")
            current = owner.__dict__[field]
            if not _size_like(current):
                raise ApplyError(f"plan rewrites {where}.{name}, which holds {type(current).__name__} {current!r}, not a "
                                 "size (a number or a tuple/list of integers): the plan file was edited; make a new plan")
            old = expected.get(path, {}).get(name)
            if "." in name and (_plain(current) == _plain(value) or old is not None and _plain(current) != _plain(old)):
                continue  # a config field the handler rebuilt (from the pruned shapes): it knows the config best
            if old is not None and _plain(current) != _plain(old):
                raise ApplyError(f"plan expects {where}.{name} = {old!r}, but it is {current!r}: already pruned, "
                                 "or a different model; apply plans to a fresh copy of the model they were made for")
            owner.__dict__[field] = _like(current, value)


def _owner(module: nn.Module, name: str) -> tuple[Any, str]:
    """The object holding attribute ``name`` and its field: the module, or for ``config.<field>`` the config the
    module holds (shared by the modules that read it; ``graph/tracking.py`` names it after the first)."""
    head, dot, field = name.partition(".")
    if not dot:
        return module, name
    return vars(module).get(head), field


def _size_like(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    return isinstance(value, (tuple, list)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, (tuple, list)) else value


def _like(current: Any, value: Any) -> Any:
    """``value`` (from JSON) as the type the attribute has: a tuple stays a tuple, an int an int."""
    if isinstance(current, (tuple, list)) and isinstance(value, (list, tuple)):
        return type(current)(int(v) for v in value)
    if isinstance(current, int) and not isinstance(current, bool) and isinstance(value, (int, float)):
        return int(value)
    if isinstance(current, float) and isinstance(value, (int, float)):
        return float(value)
    raise ApplyError(f"cannot write {value!r} into an attribute holding {current!r}")
