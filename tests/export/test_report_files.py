"""report.json / report.md / report.html rendering (the CLI tests cover the files `prune` writes)."""

import json
import sys

import pytest
import torch

import secateurs as sc
from secateurs.reporting import build_report, measure_latency, render_html, render_markdown
from secateurs.reporting.document import latency_rows
from secateurs.testing.models import ConcatNet


@pytest.fixture(scope="module")
def doc():
    torch.manual_seed(0)
    model = ConcatNet().eval()
    x = torch.randn(1, 3, 16, 16)
    before = {1: measure_latency(model, x, repeats=2)}
    result = sc.prune(model, x, ratio=0.5)
    after = {1: measure_latency(model, x, repeats=2)}
    return build_report(result, model_spec="secateurs.testing.models:ConcatNet", input_desc={"shape": [1, 3, 16, 16]},
                        latency=latency_rows(before, after))


def test_report_is_plain_json(doc):
    again = json.loads(json.dumps(doc))
    assert again == doc
    assert doc["counts"]["macs_after"] < doc["counts"]["macs_before"]
    assert doc["latency"][0]["batch"] == 1 and doc["latency"][0]["speedup"] > 0
    assert doc["layers"] and {"name", "before", "after"} <= set(doc["layers"][0])


def test_markdown_has_summary_and_layer_tables(doc):
    md = render_markdown(doc)
    assert "| MACs |" in md and "latency, batch 1" in md and "MAC ideal" in md and "`head`" in md


def test_html_is_self_contained_with_embedded_plots(doc):
    pytest.importorskip("matplotlib")
    html = render_html(doc)
    assert html.startswith("<!DOCTYPE html>") and html.count("data:image/png;base64,") == 2
    assert "src=\"http" not in html and "<link" not in html and "<script" not in html


def test_html_without_matplotlib_explains_missing_plots(doc, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    html = render_html(doc)
    assert "Plots unavailable" in html and "pip install" in html


def test_latency_stats_record_threads_and_batch():
    stats = measure_latency(torch.nn.Linear(4, 4).eval(), torch.randn(3, 4), repeats=3, warmup=1)
    assert stats.batch == 3 and stats.threads == torch.get_num_threads() and stats.repeats == 3
    assert stats.min_ms <= stats.median_ms <= stats.max_ms
