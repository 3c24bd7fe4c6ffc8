"""Uniform (local) selection: remove the same fraction of units in every eligible group."""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from secateurs.errors import InvalidTypeError
from secateurs.graph.groups import Group
from secateurs.targets import CHANNEL_ROLES, DEFAULT_KINDS, KINDS, resolve_ratio

__all__ = ["CHANNEL_ROLES", "DEFAULT_KINDS", "KINDS", "IgnoreSpec", "Limits", "channel_role", "group_is_ignored",
           "ratio_for",
           "ratio_key", "resolve_ratio", "select_lowest"]

def channel_role(group: Group) -> str | None:
    """``"hidden"`` for a residual stream, ``"ffn"`` for an intermediate width (``graph/ffn.py``), else None."""
    if "residual" in group.tags:
        return "hidden"
    return "ffn" if "ffn" in group.tags else None


def ratio_key(group: Group, ratios: Mapping[str, float]) -> str:
    """The key of ``ratios`` that applies to ``group``: its kind, or for channels its role when that is given
    (channels that are neither a residual stream nor an intermediate width, such as attention channels that no
    head structure explains, answer to ``"channels"`` only)."""
    if group.kind != "channels":
        return group.kind
    if "heads" in group.tags and "heads" in ratios:  # whole key/value groups of grouped-query attention
        return "heads"
    role = channel_role(group)
    return role if role is not None and role in ratios else "channels"


def ratio_for(group: Group, ratios: Mapping[str, float]) -> float:
    return float(ratios.get(ratio_key(group, ratios), 0.0))


@dataclass(frozen=True)
class IgnoreSpec:
    names: tuple[str, ...] = ()
    types: tuple[type, ...] = ()

    @staticmethod
    def parse(ignore: Iterable[str | type] | str | type | None) -> IgnoreSpec:
        if ignore is None:
            return IgnoreSpec()
        items = [ignore] if isinstance(ignore, (str, type)) else list(ignore)
        names, types = [], []
        for item in items:
            if isinstance(item, str):
                names.append(item)
            elif isinstance(item, type) and issubclass(item, torch.nn.Module):
                types.append(item)
            else:
                raise InvalidTypeError(f"ignore entries must be module names, glob patterns or nn.Module types, got {item!r}")
        return IgnoreSpec(tuple(names), tuple(types))

    def matches(self, path: str, module: torch.nn.Module | None) -> bool:
        for pattern in self.names:
            if path == pattern or path.startswith(pattern + ".") or fnmatch.fnmatchcase(path, pattern):
                return True
        return module is not None and bool(self.types) and isinstance(module, self.types)

    def unmatched(self, model: torch.nn.Module) -> list[str]:
        paths = [n for n, _ in model.named_modules()]
        return [p for p in self.names if not any(self.matches_name(p, q) for q in paths)]

    @staticmethod
    def matches_name(pattern: str, path: str) -> bool:
        return path == pattern or path.startswith(pattern + ".") or fnmatch.fnmatchcase(path, pattern)


def group_is_ignored(group: Group, spec: IgnoreSpec, model: torch.nn.Module) -> bool:
    """A group is ignored when any member belongs to an ignored module or to one of its descendants."""
    if not spec.names and not spec.types:
        return False
    modules = dict(model.named_modules())
    for m in group.members:
        parts = m.fqn.split(".")[:-1]
        for i in range(len(parts), 0, -1):
            prefix = ".".join(parts[:i])
            if spec.matches(prefix, modules.get(prefix)):
                return True
    return False


@dataclass(frozen=True)
class Limits:
    """Per-group bounds on removal: keep ``min_keep`` units, remove at most ``max_ratio`` of them, and keep a
    multiple of ``round_to`` channels (groups of single-channel units only; heads are whole already)."""

    round_to: int = 1
    min_keep: int = 1
    max_ratio: float | None = None

    def cap(self, group: Group) -> int:
        n = group.n_units
        cap = n - max(self.min_keep, group.min_units, 1)
        if self.max_ratio is not None:
            cap = min(cap, math.floor(self.max_ratio * n + 1e-9))
        return max(cap, 0)

    def rounded(self, group: Group, n_remove: int, capped: bool = True) -> int:
        """``n_remove`` adjusted so the kept count obeys every bound."""
        n = group.n_units
        cap = self.cap(group) if capped else max(n - max(self.min_keep, group.min_units, 1), 0)
        keep = n - min(max(n_remove, 0), cap)
        if n_remove > 0 and self.round_to > 1 and group.unit_size == 1 and n >= self.round_to:
            keep = max(self.round_to, int(round(keep / self.round_to)) * self.round_to)
            if n - keep > cap:
                keep = math.ceil((n - cap) / self.round_to) * self.round_to
        return n - min(n, keep)


def select_lowest(scores: np.ndarray, n_remove: int) -> np.ndarray:
    """Indices of the ``n_remove`` lowest scores (ties broken by index, so results are reproducible)."""
    if n_remove <= 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((np.arange(len(scores)), scores))
    return np.sort(order[:n_remove]).astype(np.int64)
