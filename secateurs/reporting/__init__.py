"""Reports on disk: latency measurement, report.json / report.md / report.html with embedded plots.

``PruneReport`` (the in-memory result of ``prune()``) stays in :mod:`secateurs.reporting.prune_report`.
"""

from secateurs.reporting.document import build_report
from secateurs.reporting.latency import LatencyStats, measure_latency
from secateurs.reporting.render import render_html, render_markdown

__all__ = ["LatencyStats", "build_report", "measure_latency", "render_html", "render_markdown"]
