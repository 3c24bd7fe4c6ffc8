"""Choose whole blocks to drop and record them in a Plan (``Plan.dropped_layers``)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from torch import nn

from secateurs.config import PruneConfig
from secateurs.depth.criteria import LAYER_CRITERIA, get_layer_criterion, score_layers
from secateurs.errors import InvalidArgumentError, InvalidTypeError
from secateurs.graph.analysis import Analysis
from secateurs.graph.blocks import container, find_blocks
from secateurs.plans import Plan

DEFAULT = "block_influence"


def check_drop_args(drop_layers: Any, layer_importance: str | None, calibration: Any) -> str | None:
    """Validate the layer-dropping arguments; the criterion name to use, or None when nothing is dropped."""
    if drop_layers is None or drop_layers == 0:
        if layer_importance is not None:
            raise InvalidArgumentError(f"layer_importance={layer_importance!r} is given without drop_layers=N; pass "
                                       "drop_layers= the number of blocks to remove")
        return None
    if isinstance(drop_layers, bool) or not isinstance(drop_layers, int) or drop_layers < 0:
        raise InvalidTypeError(f"drop_layers must be a non-negative integer (the number of blocks removed), got {drop_layers!r}")
    name = DEFAULT if layer_importance is None else layer_importance
    get_layer_criterion(name)
    if calibration is None:
        raise InvalidArgumentError(
            f"drop_layers={drop_layers} with layer_importance={name!r} needs calibration data: pass calibration=<iterable "
            f"of batches shaped like example_inputs> (e.g. [{{'input_ids': ids}}]); layer criteria are "
            f"{', '.join(LAYER_CRITERIA.names())}")
    return name


def choose_layers(model: nn.Module, drop_layers: int, layer_importance: str, calibration: Any) -> tuple[str, dict[str, Any]]:
    """The container path and a record (indices dropped, scores, criterion) for ``drop_layers`` blocks."""
    if any(p.is_meta for p in model.parameters()):
        raise InvalidArgumentError("layer importance reads activations, but the model is on the meta device; load "
                                   "the weights first")
    path = find_blocks(model)
    blocks = list(container(model, path))
    if drop_layers >= len(blocks):
        raise InvalidArgumentError(f"drop_layers={drop_layers} but {path or type(model).__name__!r} has {len(blocks)} "
                                   "blocks; at least one must remain")
    result = score_layers(model, blocks, calibration, drop_layers, layer_importance)
    record = {"n": drop_layers, "importance": layer_importance, "container": path, "dropped": result.drop,
              "scores": result.scores, "calibration_batches": result.batches}
    return path, record


@dataclass
class DropChoice:
    """The blocks a layer criterion chose (or LaCo merged away): the container path and the record kept in
    ``plan.settings``."""

    container: str
    record: dict[str, Any]
    key: str = "drop_layers"  # the settings entry: "drop_layers" or "merge_layers"

    @property
    def dropped(self) -> list[int]:
        return list(self.record["dropped"])

    @property
    def runs(self) -> list[list[int]]:
        return [list(r) for r in self.record.get("runs", [])]


def choose_drop(model: nn.Module, drop_layers: Any, layer_importance: str | None, calibration: Any,
                merge_layers: int | None = None) -> DropChoice | None:
    """Validate the arguments and score the blocks (or choose the runs to merge); None when no layer is removed."""
    if merge_layers:
        if calibration is None:
            raise InvalidArgumentError(
                f"merge_layers={merge_layers} chooses the layers to merge by how similar the merged model stays on "
                "calibration data: pass calibration=<iterable of batches shaped like example_inputs>")
        from secateurs.depth.merge import choose_merges

        return DropChoice(*choose_merges(model, int(merge_layers), calibration), key="merge_layers")
    name = check_drop_args(drop_layers, layer_importance, calibration)
    if name is None:
        return None
    return DropChoice(*choose_layers(model, int(drop_layers), name, calibration))


def without_dropped(analysis: Analysis, choice: DropChoice | None) -> Analysis:
    """``analysis`` without the groups that live entirely inside dropped blocks (nothing to prune there; global
    ranking and data criteria then see only the blocks that remain). Groups spanning blocks, such as the
    hidden size, are kept."""
    if choice is None:
        return analysis
    prefix = choice.container + "." if choice.container else ""
    inside = tuple(f"{prefix}{i}." for i in choice.dropped)
    groups = [g for g in analysis.groups if not all(m.fqn.startswith(inside) for m in g.members)]
    return replace(analysis, groups=groups, dropped=analysis.dropped + inside)


def attach(plan: Plan, choice: DropChoice | None) -> Plan:
    """Record the chosen blocks in ``plan`` (``dropped_layers`` for apply, ``settings["drop_layers"]`` for people)."""
    if choice is None:
        return plan
    plan.dropped_layers = {choice.container: choice.dropped}
    if choice.runs:
        plan.merged_layers = {choice.container: choice.runs}
    plan.settings[choice.key] = choice.record
    plan.validate()
    return plan


def width_calibration(config: PruneConfig, calibration: Any) -> Any:
    """The calibration batches for the width criterion of a plan that also drops or merges layers or rotates: given
    only when that criterion reads data (the batches are for the layer choice or the rotation otherwise)."""
    if not (config.removes_layers() or config.rotate):
        return calibration
    from secateurs.scoring.registry import get_criterion

    return calibration if getattr(get_criterion(config.importance), "needs_data", False) else None
