"""Validation of plans read from JSON: the type of every field, then the consistency of groups and kept indices.

A hand-edited plan must fail here, naming the field, rather than apply and crash at the first forward
(``"groups": 0`` as a conv hint, a BatchNorm's ``keep`` entry deleted while its conv still shrinks).
"""

from __future__ import annotations

import re
from typing import Any

from secateurs.errors import FileFormatError

_LITERAL_KEY = re.compile(r"args\.\d+|kwargs\.[A-Za-z_][A-Za-z0-9_]*")
_GROUP_FIELDS: dict[str, tuple[type, ...]] = {"id": (int,), "kind": (str,), "name": (str,), "members": (list,),
                                              "n_units": (int,), "unit_size": (int,), "removed": (list,),
                                              "exact": (bool,), "inexact_reason": (str,)}


def _bad(where: str, what: str, value: Any) -> FileFormatError:
    return FileFormatError(f"plan field {where} must be {what}, got {value!r:.80}; the plan file is corrupt or was "
                           "edited by hand: make a new plan")


def _int(value: Any, minimum: int | None = None) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and (minimum is None or value >= minimum)


def _ints(value: Any, minimum: int | None = None) -> bool:
    return isinstance(value, list) and all(_int(v, minimum) for v in value)


def _mapping(d: dict[str, Any], key: str) -> dict[str, Any]:
    value = d.get(key)
    if value is None and key not in ("shapes", "keep"):
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise _bad(key, "a mapping with string keys", value)
    return value


def check_plan_dict(d: dict[str, Any]) -> None:
    """Every field of a plan's JSON has the type the format defines (unknown fields are left to their owners)."""
    if not isinstance(d.get("fingerprint"), str):
        raise _bad("fingerprint", "a string", d.get("fingerprint"))
    if not isinstance(d.get("version", ""), str):
        raise _bad("version", "a string", d.get("version"))
    for fqn, shape in _mapping(d, "shapes").items():
        if not _ints(shape, 0):
            raise _bad(f"shapes[{fqn!r}]", "a list of sizes (integers >= 0)", shape)
    for fqn, dims in _mapping(d, "keep").items():
        if not isinstance(dims, dict) or not all(isinstance(k, str) and k.isdigit() or _int(k, 0) for k in dims):
            raise _bad(f"keep[{fqn!r}]", "a mapping of dims to kept indices", dims)
        for dim, idx in dims.items():
            if not _ints(idx, 0):
                raise _bad(f"keep[{fqn!r}][{dim}]", "a list of indices (integers >= 0)", idx)
    for key in ("hints", "hints_before"):
        for path, args in _mapping(d, key).items():
            if not isinstance(args, dict):
                raise _bad(f"{key}[{path!r}]", "a mapping of argument names to sizes", args)
            for name, value in args.items():
                if not (_int(value, 1) or (_ints(value, 1) and value)):
                    raise _bad(f"{key}[{path!r}][{name!r}]", "a positive integer or a list of them", value)
    for container, gone in _mapping(d, "dropped_layers").items():
        if not _ints(gone, 0):
            raise _bad(f"dropped_layers[{container!r}]", "a list of block indices", gone)
    if not isinstance(d.get("settings", {}), dict):
        raise _bad("settings", "a mapping", d.get("settings"))
    _check_literals(_mapping(d, "literals"))
    groups = d.get("groups", [])
    if not isinstance(groups, list):
        raise _bad("groups", "a list of group records", groups)
    for i, g in enumerate(groups):
        _check_group_dict(g, i)


def _check_literals(literals: dict[str, Any]) -> None:
    for node, entry in literals.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("op"), str) \
                or not isinstance(entry.get("target", ""), str):
            raise _bad(f"literals[{node!r}]", "a mapping with the op name", entry)
        for part in ("set", "before"):
            values = entry.get(part, {})
            if not isinstance(values, dict):
                raise _bad(f"literals[{node!r}][{part!r}]", "a mapping of argument keys to sizes", values)
            for key, value in values.items():
                if not _LITERAL_KEY.fullmatch(str(key)) or not (_int(value) or _ints(value)):
                    raise _bad(f"literals[{node!r}][{part!r}][{key!r}]", "an integer size or a list of them", value)


def _check_group_dict(g: Any, i: int) -> None:
    if not isinstance(g, dict):
        raise _bad(f"groups[{i}]", "a group record", g)
    for key, types in _GROUP_FIELDS.items():
        if key == "inexact_reason" and key not in g:
            continue
        value = g.get(key)
        if not isinstance(value, types) or (types == (int,) and isinstance(value, bool)):
            raise _bad(f"groups[{i}].{key}", "a " + " or ".join(t.__name__ for t in types), value)
    for key in ("n_units", "unit_size"):
        if g[key] < 1:
            raise _bad(f"groups[{i}].{key}", "a positive integer", g[key])
    if not _ints(g["removed"], 0):
        raise _bad(f"groups[{i}].removed", "a list of unit indices", g["removed"])
    for m in g["members"]:
        if not (isinstance(m, (list, tuple)) and len(m) == 2 and isinstance(m[0], str) and _int(m[1], 0)):
            raise _bad(f"groups[{i}].members", "a list of [tensor name, dim] pairs", m)


def check_groups(plan: Any) -> None:
    """Groups agree with the kept indices: every member of a group that removes units has a ``keep`` entry for
    its dim, losing at least one index per removed unit, and members of the same original size keep the same
    number of indices."""
    ids = [g.id for g in plan.groups]
    if len(set(ids)) != len(ids):
        raise FileFormatError("plan has two groups with the same id; make a new plan")
    for g in plan.groups:
        if len(set(g.removed)) != len(g.removed) or any(not 0 <= r < g.n_units for r in g.removed) \
                or len(g.removed) >= g.n_units:
            raise FileFormatError(f"plan group {g.name!r} removes units {g.removed[:8]} of {g.n_units}: they must be "
                                  "unique, in range, and leave at least one")
        if not g.removed:
            continue
        kept_by_size: dict[int, tuple[int, str]] = {}
        for fqn, dim in g.members:
            shape = plan.shapes.get(fqn)
            if shape is None or not 0 <= dim < len(shape):
                raise FileFormatError(f"plan group {g.name!r} names {fqn!r} dim {dim}, which is not among its shapes")
            kept = plan.keep.get(fqn, {}).get(dim)
            if kept is None:
                raise FileFormatError(f"plan group {g.name!r} removes {len(g.removed)} units but has no kept indices for "
                                      f"its member {fqn!r} dim {dim}: the plan was edited; make a new plan")
            if len(kept) > shape[dim] - len(g.removed):
                raise FileFormatError(f"plan group {g.name!r} removes {len(g.removed)} units but {fqn!r} dim {dim} "
                                      f"keeps {len(kept)} of {shape[dim]}")
            other = kept_by_size.setdefault(shape[dim], (len(kept), fqn))
            if other[0] != len(kept):
                raise FileFormatError(f"plan group {g.name!r}: {fqn!r} dim {dim} keeps {len(kept)} of {shape[dim]} but "
                                      f"{other[1]!r} keeps {other[0]}; members of a group shrink together")
