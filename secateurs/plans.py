"""Plan: the JSON-serializable record of what a pruning removes, replayable on a fresh model."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from secateurs._version import __version__
from secateurs.config import PruneConfig
from secateurs.errors import FileFormatError, InvalidTypeError
from secateurs.plan_codec import FORMAT, READABLE, as_lists, read_keep, read_removed, write_indices


@dataclass
class GroupRecord:
    id: int
    kind: str
    name: str
    members: list[tuple[str, int]]
    n_units: int
    unit_size: int
    removed: list[int]
    exact: bool
    inexact_reason: str = ""


@dataclass
class Plan:
    fingerprint: str
    shapes: dict[str, list[int]]  # every parameter/buffer before pruning
    keep: dict[str, dict[int, list[int]]]  # fqn -> dim -> sorted kept indices
    hints: dict[str, dict[str, Any]] = field(default_factory=dict)  # module path -> argument -> new value
    groups: list[GroupRecord] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    version: str = __version__
    # container path (a ModuleList/Sequential of residual blocks) -> sorted indices of the blocks removed whole
    dropped_layers: dict[str, list[int]] = field(default_factory=dict)
    format: int = FORMAT
    hints_before: dict[str, dict[str, Any]] = field(default_factory=dict)  # module path -> argument -> old value
    # graph node -> {"op": target, "args.N"/"kwargs.NAME": value after pruning}: sizes written into the ops of an
    # exported program (view shapes, split sizes); surgery rewrites them when the model is such a graph
    literals: dict[str, dict[str, Any]] = field(default_factory=dict)
    # the options the plan was made with: ``sc.plan(model, x, plan.config)`` on the same weights makes it again
    config: PruneConfig | None = None
    # container path -> runs of consecutive block indices merged into their first block (LaCo), before dropping;
    # every other index of a run is also in ``dropped_layers``
    merged_layers: dict[str, list[list[int]]] = field(default_factory=dict)
    # module path -> attribute -> value after pruning (int, float or list for a tuple/list attribute): the attributes
    # forward() computes the pruned sizes from, found by graph/bindings.py; surgery writes them (docs/binding.md)
    attributes: dict[str, dict[str, Any]] = field(default_factory=dict)
    attributes_before: dict[str, dict[str, Any]] = field(default_factory=dict)  # the same attributes' old values

    @property
    def exact(self) -> bool:
        """True when every group that removes units can be checked exactly against the masked original (merged
        layers change the function by design: never exact)."""
        return not self.merged_layers and all(g.exact for g in self.groups if g.removed)

    def removed_units(self) -> int:
        return sum(len(g.removed) for g in self.groups)

    def renamed(self, fqn: str) -> str | None:
        """The name of ``fqn`` after the dropped layers are gone (later blocks renumbered); None if it was dropped."""
        for container, gone in self.dropped_layers.items():
            prefix = container + "." if container else ""
            if not fqn.startswith(prefix):
                continue
            head, _, rest = fqn[len(prefix):].partition(".")
            if not head.isdigit():
                continue
            i = int(head)
            if i in gone:
                return None
            new = i - sum(1 for g in gone if g < i)
            return f"{prefix}{new}" + (f".{rest}" if rest else "")
        return fqn

    def shapes_after(self) -> dict[str, list[int]]:
        out = {k: list(v) for k, v in self.shapes.items()}
        for fqn, dims in self.keep.items():
            for d, idx in dims.items():
                out[fqn][int(d)] = len(idx)
        if not self.dropped_layers:
            return out
        return {new: v for k, v in out.items() if (new := self.renamed(k)) is not None}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(replace(self, config=None, keep={}))
        d.update(write_indices(self.keep, self.shapes, d["groups"]))  # index lists as runs/bitmaps (plan_codec)
        d["format"] = FORMAT
        d["config"] = None if self.config is None else self.config.to_dict()
        return d

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    @staticmethod
    def from_json(text: str) -> Plan:
        if not isinstance(text, (str, bytes, bytearray)):
            raise InvalidTypeError(f"Plan.from_json needs the JSON text, got {type(text).__name__}")
        try:
            d = json.loads(text)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError of bytes
            raise FileFormatError(f"plan is not valid JSON: {type(exc).__name__}: {str(exc)[:200]}") from None
        return Plan.from_dict(d)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Plan:
        if not isinstance(d, dict) or d.get("format") not in READABLE:
            raise FileFormatError(f"not a secateurs plan of format {' or '.join(map(str, READABLE))} (found format "
                                  f"{d.get('format') if isinstance(d, dict) else None!r}); a newer secateurs wrote it?")
        from secateurs.plan_checks import check_plan_dict

        d = as_lists(d)  # index sets written out (format 2) so the checks and the reader see plain lists
        check_plan_dict(d)  # the type of every field, named when wrong
        try:
            keep = read_keep(d)
            groups = [GroupRecord(**{**g, "members": [tuple(m) for m in g["members"]], "removed": read_removed(d, g)})
                      for g in d.get("groups", [])]
            plan = Plan(
                fingerprint=str(d["fingerprint"]),
                shapes={k: [int(s) for s in v] for k, v in d["shapes"].items()},
                keep=keep,
                hints=dict(d.get("hints", {})),
                hints_before=dict(d.get("hints_before", {})),
                literals={str(k): dict(v) for k, v in (d.get("literals") or {}).items()},
                groups=groups,
                settings=dict(d.get("settings", {})),
                version=str(d.get("version", "")),
                dropped_layers={str(k): [int(i) for i in v] for k, v in (d.get("dropped_layers") or {}).items()},
                merged_layers={str(k): [[int(i) for i in run] for run in v]
                               for k, v in (d.get("merged_layers") or {}).items()},
                config=None if d.get("config") is None else PruneConfig.from_dict(d["config"]),
                attributes={str(k): dict(v) for k, v in (d.get("attributes") or {}).items()},
                attributes_before={str(k): dict(v) for k, v in (d.get("attributes_before") or {}).items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:  # config errors included
            raise FileFormatError(f"plan JSON is missing or has malformed fields: {exc}") from exc
        plan.validate()
        return plan

    def validate(self) -> None:
        for which, table in (("attributes", self.attributes), ("attributes_before", self.attributes_before)):
            for path, values in table.items():
                for name, value in values.items():
                    if not _attribute_value(value):
                        raise FileFormatError(f"plan {which} of {path!r}: {name!r} must be a number or a list of "
                                              f"integers, got {value!r}")
        for container, gone in self.dropped_layers.items():
            prefix = container + "." if container else ""
            if not gone or gone != sorted(set(gone)) or gone[0] < 0:
                raise FileFormatError(f"plan drops layers {gone} of {container!r}: indices must be sorted, unique, >= 0")
            present = {int(k[len(prefix):].split(".", 1)[0]) for k in self.shapes
                       if k.startswith(prefix) and k[len(prefix):].split(".", 1)[0].isdigit()}
            if not set(gone) <= present:
                raise FileFormatError(f"plan drops layers {sorted(set(gone) - present)} of {container!r}, which has "
                                      f"no tensors under those indices (it has {len(present)} blocks)")
            if len(gone) >= len(present):
                raise FileFormatError(f"plan drops every layer of {container!r}; at least one must remain")
        self._validate_merges()
        for fqn, dims in self.keep.items():
            if fqn not in self.shapes:
                raise FileFormatError(f"plan keeps indices of {fqn!r}, which is not among its recorded shapes")
            shape = self.shapes[fqn]
            for d, idx in dims.items():
                if not 0 <= d < len(shape):
                    raise FileFormatError(f"plan dim {d} out of range for {fqn!r} of shape {shape}")
                if not idx or idx != sorted(set(idx)) or idx[0] < 0 or idx[-1] >= shape[d]:
                    raise FileFormatError(f"plan kept indices for {fqn!r} dim {d} must be sorted, unique, non-empty and < {shape[d]}")
        from secateurs.plan_checks import check_groups

        check_groups(self)

    def _validate_merges(self) -> None:
        for container, runs in self.merged_layers.items():
            gone = set(self.dropped_layers.get(container, []))
            flat = [i for run in runs for i in run]
            if len(flat) != len(set(flat)) or any(len(r) < 2 or r != list(range(r[0], r[0] + len(r))) for r in runs):
                raise FileFormatError(f"plan merges layers {runs} of {container!r}: each run must be at least two "
                                      "consecutive indices, and runs must not overlap")
            if not {i for run in runs for i in run[1:]} <= gone or gone & {run[0] for run in runs}:
                raise FileFormatError(f"plan merges layers {runs} of {container!r} but drops {sorted(gone)}: every "
                                      "index of a run but the first must be dropped, the first kept")


def _attribute_value(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    return isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
