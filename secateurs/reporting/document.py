"""The report as plain JSON-ready data: counts, per-layer widths, measured latency next to the MAC ideal."""

from __future__ import annotations

import datetime
from typing import Any

import torch

from secateurs._version import __version__
from secateurs.plans import Plan
from secateurs.reporting.prune_report import PruneReport

REPORT_FORMAT = 1


def layer_widths(plan: Plan) -> list[dict[str, Any]]:
    """Output width (dim 0) of every weight matrix/kernel before and after the plan, in model order."""
    after = plan.shapes_after()  # keyed by the names after dropped layers are renumbered
    rows = []
    for name, shape in plan.shapes.items():
        if name.endswith(".weight") and len(shape) >= 2:
            new = plan.renamed(name) if plan.dropped_layers else name
            out_w, in_w = (int(after[new][0]), int(after[new][1])) if new is not None else (0, 0)  # 0: layer dropped
            rows.append({"name": name[: -len(".weight")], "before": int(shape[0]), "after": out_w,
                         "in_before": int(shape[1]), "in_after": in_w})
    return rows


def latency_rows(before: dict[int, Any], after: dict[int, Any]) -> list[dict[str, Any]]:
    """Pair latency stats by batch size: ``{batch: LatencyStats}`` before and after -> rows with the speedup."""
    rows = []
    for batch in sorted(set(before) & set(after)):
        b, a = before[batch].to_dict(), after[batch].to_dict()
        rows.append({"batch": batch, "before": b, "after": a,
                     "speedup": b["median_ms"] / a["median_ms"] if a["median_ms"] > 0 else None})
    return rows


def build_report(
    result: PruneReport,
    *,
    model_spec: str | None = None,
    input_desc: dict[str, Any] | None = None,
    latency: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Everything ``report.json`` holds; ``render_markdown`` / ``render_html`` read only this dict."""
    core = result.to_dict()
    return {
        "format": "secateurs-report", "format_version": REPORT_FORMAT,
        "library_version": __version__, "torch_version": torch.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": {"spec": model_spec, "class": type(result.model).__name__},
        "input": input_desc,
        "settings": core["settings"],
        "counts": {
            "params_before": result.params_before, "params_after": result.params_after,
            "macs_before": result.macs_before, "macs_after": result.macs_after,
            "params_kept": result.params_ratio, "macs_kept": result.macs_ratio,
            "bytes_before": result.bytes_before, "bytes_after": result.bytes_after,
        },
        "groups": {"total": len(result.plan.groups), "pruned": core["groups_pruned"], "units_removed": core["units_removed"]},
        "verification": core["verification"],
        "compensation": core["compensation"],
        "dropped_layers": {k: list(v) for k, v in result.plan.dropped_layers.items()},
        "notes": core["notes"],
        "layers": layer_widths(result.plan),
        "mac_ideal_speedup": 1 / result.macs_ratio if result.macs_ratio else None,
        "latency": latency or [],
        "exports": {},
    }
