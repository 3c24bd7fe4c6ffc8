"""Compact JSON for the index lists of a plan: kept indices per tensor dim and removed units per group.

Format 2 stores every distinct sorted index set once, in ``index_sets``, as runs (``[start, stop, start, stop,
...]``, half-open) or as a bitmap (``base64`` of ``numpy.packbits``, little bit order), whichever is shorter;
``keep`` and each group's ``removed`` then name a set by its position. An 8B Llama plan (every FFN neuron
list of 32 layers) drops from 8.3 MB to a few hundred kB. Format 1 listed every index; ``read_keep`` and
``read_removed`` still read it.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from secateurs.errors import FileFormatError

#: the plan format written; ``READABLE`` are the ones read
FORMAT = 2
READABLE = (1, 2)


class IndexTable:
    """Distinct sorted index sets of one plan, each encoded once (``add`` returns the set's position)."""

    def __init__(self) -> None:
        self._ids: dict[tuple[int, tuple[int, ...]], int] = {}
        self.entries: list[dict[str, Any]] = []

    def add(self, indices: Sequence[int], size: int) -> int:
        key = (int(size), tuple(int(i) for i in indices))
        found = self._ids.get(key)
        if found is None:
            found = self._ids[key] = len(self.entries)
            self.entries.append(encode_set(key[1], key[0]))
        return found


def encode_set(indices: Sequence[int], size: int) -> dict[str, Any]:
    """``{"size": n, "runs": [...]}`` or ``{"size": n, "bits": "..."}`` for sorted unique ``indices`` < ``size``."""
    idx = np.asarray(indices, dtype=np.int64)
    if len(idx) == 0:
        return {"size": int(size), "runs": []}
    breaks = np.flatnonzero(np.diff(idx) != 1) + 1
    starts = idx[np.concatenate(([0], breaks))]
    stops = idx[np.concatenate((breaks - 1, [len(idx) - 1]))] + 1
    runs = np.stack([starts, stops], axis=1).ravel().tolist()
    mask = np.zeros(size, dtype=bool)
    mask[idx] = True
    bits = base64.b64encode(np.packbits(mask, bitorder="little").tobytes()).decode("ascii")
    if len(bits) < sum(len(str(r)) + 1 for r in runs):
        return {"size": int(size), "bits": bits}
    return {"size": int(size), "runs": runs}


def decode_set(entry: Any, where: str) -> list[int]:
    """The sorted indices of one encoded set; FileFormatError naming ``where`` when it is malformed."""
    if not isinstance(entry, Mapping) or not isinstance(entry.get("size"), int) or entry["size"] < 0:
        raise FileFormatError(f"plan index set of {where} is not {{'size': n, 'runs'|'bits': ...}}: {entry!r:.80}")
    size = int(entry["size"])
    if "bits" in entry:
        try:
            raw = np.frombuffer(base64.b64decode(str(entry["bits"]), validate=True), dtype=np.uint8)
        except ValueError as exc:
            raise FileFormatError(f"plan index set of {where}: bitmap is not base64 ({exc})") from exc
        mask = np.unpackbits(raw, bitorder="little").astype(bool)
        if len(mask) < size or mask[size:].any():
            raise FileFormatError(f"plan index set of {where}: bitmap does not fit size {size}")
        return np.flatnonzero(mask[:size]).tolist()
    runs = entry.get("runs")
    if not isinstance(runs, list) or len(runs) % 2 or not all(isinstance(r, int) for r in runs):
        raise FileFormatError(f"plan index set of {where}: runs must be a flat list of [start, stop) pairs")
    pairs = np.asarray(runs, dtype=np.int64).reshape(-1, 2)
    if len(pairs) and ((pairs[:, 0] >= pairs[:, 1]).any() or (pairs[1:, 0] <= pairs[:-1, 1]).any()
                       or pairs[0, 0] < 0 or pairs[-1, 1] > size):
        raise FileFormatError(f"plan index set of {where}: runs must be increasing, disjoint and within size {size}")
    return np.concatenate([np.arange(a, b) for a, b in pairs]).tolist() if len(pairs) else []


def write_indices(keep: Mapping[str, Mapping[int, Sequence[int]]], shapes: Mapping[str, Sequence[int]],
                  groups: list[dict[str, Any]]) -> dict[str, Any]:
    """The format-2 fields: ``index_sets``, ``keep`` (fqn -> dim -> set) and ``groups`` with ``removed`` -> set."""
    table = IndexTable()
    out_keep = {fqn: {str(d): table.add(idx, shapes[fqn][d]) for d, idx in dims.items()} for fqn, dims in keep.items()}
    out_groups = [{**g, "removed": table.add(g["removed"], g["n_units"])} for g in groups]
    return {"index_sets": table.entries, "keep": out_keep, "groups": out_groups}


def _set_of(d: Mapping[str, Any], ref: Any, where: str) -> list[int]:
    sets = d.get("index_sets")
    if not isinstance(sets, list):
        raise FileFormatError("plan of format 2 has no index_sets list")
    if isinstance(ref, bool) or not isinstance(ref, int) or not 0 <= ref < len(sets):
        raise FileFormatError(f"plan {where} names index set {ref!r}, but the plan has {len(sets)}")
    return decode_set(sets[ref], where)


def read_keep(d: Mapping[str, Any]) -> dict[str, dict[int, list[int]]]:
    """Kept indices of a plan document of any readable format."""
    raw = d["keep"]
    if d.get("format") == 1:
        return {k: {int(dim): [int(i) for i in idx] for dim, idx in v.items()} for k, v in raw.items()}
    return {k: {int(dim): _set_of(d, ref, f"keep[{k!r}][{dim}]") for dim, ref in v.items()} for k, v in raw.items()}


def read_removed(d: Mapping[str, Any], group: Mapping[str, Any]) -> list[int]:
    """Removed units of one group record of a plan document of any readable format."""
    if d.get("format") == 1:
        return [int(u) for u in group["removed"]]
    return _set_of(d, group["removed"], f"group {group.get('name', group.get('id'))!r}")


def as_lists(d: Mapping[str, Any]) -> dict[str, Any]:
    """A plan document of any readable format with its kept indices and removed units as plain lists (the
    format-1 fields), for the field checks and the reader. Fields of the wrong shape are left as they are, for
    the checks to name."""
    if d.get("format") == 1:
        return dict(d)
    keep = d.get("keep")
    if isinstance(keep, dict):
        keep = {k: {str(dim): _set_of(d, ref, f"keep[{k!r}][{dim}]") for dim, ref in dims.items()}
                if isinstance(dims, dict) else dims for k, dims in keep.items()}
    groups = d.get("groups")
    if isinstance(groups, list):
        groups = [{**g, "removed": _set_of(d, g["removed"], f"groups[{i}].removed")}
                  if isinstance(g, dict) and "removed" in g else g for i, g in enumerate(groups)]
    return {**d, "format": 1, "keep": keep, "groups": groups}
