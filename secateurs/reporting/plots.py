"""PNG plots (matplotlib, Agg backend) returned as bytes, so reports can embed them without files."""

from __future__ import annotations

from typing import Any

from secateurs._plotting import png as _png
from secateurs._plotting import pyplot as _pyplot


def widths_plot(layers: list[dict[str, Any]]) -> bytes:
    """Per-layer output width before (light) and after (dark)."""
    plt = _pyplot()
    n = max(1, len(layers))
    fig, ax = plt.subplots(figsize=(min(24.0, 2 + 0.28 * n), 3.6))
    xs = range(len(layers))
    ax.bar(xs, [r["before"] for r in layers], color="#c8d6e5", label="before")
    ax.bar(xs, [r["after"] for r in layers], color="#2e86de", label="after")
    ax.set_xticks(list(xs))
    ax.set_xticklabels([r["name"] for r in layers], rotation=90, fontsize=6)
    ax.set_ylabel("output width")
    ax.set_title("Per-layer width")
    ax.legend()
    return _png(fig)


def totals_plot(report: dict[str, Any]) -> bytes:
    """Params, MACs and measured latency after pruning, as a percentage of before."""
    plt = _pyplot()
    c = report["counts"]
    labels = ["params", "MACs"]
    values = [100 * c["params_kept"], 100 * c["macs_kept"]]
    for row in report.get("latency", []):
        labels.append(f"latency b={row['batch']}")
        values.append(100 * row["after"]["median_ms"] / row["before"]["median_ms"])
    fig, ax = plt.subplots(figsize=(1.5 + 1.2 * len(labels), 3.2))
    bars = ax.bar(labels, values, color=["#10ac84", "#ee5253"] + ["#5f27cd"] * (len(labels) - 2))
    ax.axhline(100, color="gray", lw=0.8, ls="--")
    for b, v in zip(bars, values, strict=True):
        ax.text(b.get_x() + b.get_width() / 2, v, f"{v:.0f}%", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("% of unpruned")
    ax.set_title("After pruning")
    return _png(fig)
