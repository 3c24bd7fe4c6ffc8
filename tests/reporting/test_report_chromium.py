"""report.html in a real browser: headless Chromium (Debian package ``chromium``) renders it and loads every image."""

import re
import shutil
import subprocess

import pytest
import torch

import secateurs as sc
from secateurs.reporting import build_report, measure_latency, render_html
from secateurs.reporting.document import latency_rows
from secateurs.testing.models import ConcatNet

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome", "chrome") if shutil.which(n)),
                None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (Debian: apt-get install chromium)")

# counts the images once the page has loaded; --dump-dom prints the DOM after the load event
_PROBE = """<script>window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  document.body.setAttribute('data-images', imgs.length);
  document.body.setAttribute('data-loaded', imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length);
});</script></body>"""


def _chromium(*args, timeout=120):
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
           "--virtual-time-budget=5000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def report_html(tmp_path_factory):
    pytest.importorskip("matplotlib")
    torch.manual_seed(0)
    model = ConcatNet().eval()
    x = torch.randn(1, 3, 16, 16)
    before = {1: measure_latency(model, x, repeats=2)}
    scan = sc.sensitivity(model, x, ratios=[0.25, 0.5])
    result = sc.prune(model, x, ratio=0.5)
    after = {1: measure_latency(model, x, repeats=2)}
    doc = build_report(result, model_spec="secateurs.testing.models:ConcatNet", input_desc={"shape": [1, 3, 16, 16]},
                       latency=latency_rows(before, after))
    doc["sensitivity"] = {"source": "scan", "result": scan.to_dict(), "overrides": scan.overrides(max_drop=0.01)}
    path = tmp_path_factory.mktemp("html") / "report.html"
    path.write_text(render_html(doc), "utf-8")
    return path


def test_every_image_loads(report_html, tmp_path):
    probe = tmp_path / "probe.html"
    probe.write_text(report_html.read_text("utf-8").replace("</body>", _PROBE), "utf-8")
    run = _chromium("--dump-dom", probe.as_uri())
    assert run.returncode == 0, run.stderr[-2000:]
    dom = run.stdout
    assert "secateurs pruning report" in dom
    images = re.search(r'data-images="(\d+)"', dom)
    loaded = re.search(r'data-loaded="(\d+)"', dom)
    assert images and loaded, dom[-1000:]
    assert int(images.group(1)) == 3 and int(loaded.group(1)) == 3  # totals, per-layer widths, sensitivity curves


def test_screenshot_is_not_blank(report_html, tmp_path):
    from PIL import Image

    shot = tmp_path / "shot.png"
    run = _chromium(f"--screenshot={shot}", "--window-size=1200,1600", "--hide-scrollbars", report_html.as_uri())
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    with Image.open(shot) as img:
        colors = img.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 50  # text, tables and plots, not one flat colour
