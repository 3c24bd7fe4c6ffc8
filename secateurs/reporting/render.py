"""report.md and a self-contained report.html (inline CSS, PNG plots embedded as base64)."""

from __future__ import annotations

import base64
import html
from typing import Any

from secateurs.errors import MissingDependencyError


def fmt(n: float | None) -> str:
    if n is None:
        return "n/a"
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return f"{n:.0f}"


def describe_input(desc: dict[str, Any] | None) -> str:
    if not desc:
        return "n/a"
    if "shape" in desc:
        return "tensor " + "x".join(str(d) for d in desc["shape"])
    return f"token ids, sequence length {desc.get('seq_len')}"


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def summary_rows(r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(quantity, before, after, after/before) rows shared by the Markdown and HTML renderers."""
    c = r["counts"]
    rows = [("parameters", fmt(c["params_before"]), fmt(c["params_after"]), f"{c['params_kept']:.1%}"),
            ("MACs", fmt(c["macs_before"]), fmt(c["macs_after"]), f"{c['macs_kept']:.1%}")]
    if c.get("bytes_before") and c.get("bytes_after") is not None:
        rows.append(("weights file (safetensors)", _mb(c["bytes_before"]), _mb(c["bytes_after"]),
                     f"{c['bytes_after'] / c['bytes_before']:.1%}"))
    ideal = r.get("mac_ideal_speedup")
    for row in r.get("latency", []):
        b, a = row["before"]["median_ms"], row["after"]["median_ms"]
        rows.append((f"latency, batch {row['batch']} (median of {row['after']['repeats']}, "
                     f"{row['after']['threads']} thread(s))", f"{b:.2f} ms", f"{a:.2f} ms",
                     f"{a / b:.1%} ({row['speedup']:.2f}x faster; MAC ideal {ideal:.2f}x)" if ideal else f"{a / b:.1%}"))
    return rows


def export_lines(r: dict[str, Any]) -> list[str]:
    out = []
    onnx = r.get("exports", {}).get("onnx")
    if onnx:
        out.append(f"ONNX: `{onnx['file']}` ({onnx['exporter']} exporter, opset {onnx.get('opset')}); onnxruntime vs "
                   f"PyTorch max abs diff {onnx['max_abs_diff']:.2e} ({'ok' if onnx['parity_ok'] else 'MISMATCH'})")
        t = onnx.get("timing") or {}
        if "pruned_ms" in t:
            out.append(f"ONNX latency (onnxruntime, {t['threads']} thread(s), median of {t['repeats']}, interleaved): "
                       f"{t['pruned_ms']:.2f} ms vs {t['unpruned_ms']:.2f} ms for the unpruned model's ONNX "
                       f"({t['speedup']:.2f}x)")
        elif t:
            out.append(f"ONNX not timed against the unpruned model: {t['skipped']}")
    prog = r.get("exports", {}).get("pt2")
    if prog:
        out.append(f"torch.export program `{prog['file']}` ({prog['bytes'] / 1e6:.2f} MB): reloaded without pickle, max abs "
                   f"diff vs PyTorch {prog['max_abs_diff']:.2e} ({'ok' if prog['parity_ok'] else 'MISMATCH'})")
    for kind, et in (r.get("exports", {}).get("executorch") or {}).items():
        out.append(f"ExecuTorch {kind} `{et['file']}` ({et['bytes'] / 1e6:.2f} MB, XNNPACK): executorch runtime vs "
                   f"PyTorch max abs diff {et['max_abs_diff']:.2e} ({'ok' if et['parity_ok'] else 'MISMATCH'}), "
                   f"runtime latency {et['runtime_latency_ms']:.2f} ms")
    q = r.get("exports", {}).get("int8")
    if q and "quantized_layers" in q:
        out.append(f"int8 dynamic quantization of {q['quantized_layers']} Linear layers: relative error "
                   f"{q['rel_error']:.2e}, max abs diff {q['max_abs_diff']:.2e}, top-1 agreement "
                   f"{q['top1_agreement']:.1%}" + (f", latency {q['latency_ms']:.2f} ms vs {q['fp32_latency_ms']:.2f} ms fp32"
                                                  if q.get("latency_ms") else "")
                   + (f"; saved as `{q['file']}`" if q.get("file") else ""))
    if q and q.get("onnx"):
        out.append(f"int8 dynamic ONNX `{q['onnx']['file']}` (onnxruntime, int8 weights): max abs diff vs fp32 PyTorch "
                   f"{q['onnx']['max_abs_diff']:.2e}")
    qs = r.get("exports", {}).get("int8_static")
    if qs and "quantized" in qs:
        layers = ", ".join(f"{n} {k}" for k, n in qs["quantized"].items())
        how = f"{qs['qat_steps']} fake-quantized training steps" if "qat_steps" in qs else \
            f"{qs['calibration_batches']} calibration batches"
        out.append(f"int8 static quantization ({qs['method']}, {how}) of "
                   f"{layers} layers: relative error {qs['rel_error']:.2e}, max abs diff {qs['max_abs_diff']:.2e}, "
                   f"top-1 agreement {qs['top1_agreement']:.1%}" + (f", latency {qs['latency_ms']:.2f} ms vs "
                   f"{qs['fp32_latency_ms']:.2f} ms fp32 pruned" if qs.get("latency_ms") else "")
                   + (f" and {qs['unpruned_latency_ms']:.2f} ms unpruned" if qs.get("unpruned_latency_ms") else "")
                   + (f"; saved as `{qs['file']}`" if qs.get("file") else ""))
    if qs and qs.get("onnx"):
        o = qs["onnx"]
        out.append(f"int8 static ONNX `{o['file']}` (onnxruntime QDQ): max abs diff vs fp32 PyTorch {o['max_abs_diff']:.2e}; "
                   f"onnxruntime latency {o['latency_ms']:.2f} ms vs {o['fp32_latency_ms']:.2f} ms for the fp32 ONNX")
    for key, what in (("int8", "dynamic"), ("int8_static", "static")):
        skipped = r.get("exports", {}).get(key, {}).get("pytorch_skipped")
        if skipped:
            out.append(f"PyTorch int8 {what} quantization skipped: {skipped}")
    out += _sparsity_lines(r)
    cal = r.get("calibration")
    if cal:
        out.append(f"calibration data ({cal['kind']}): {cal['description']}")
    return out


def _sparsity_lines(r: dict[str, Any]) -> list[str]:
    s = r.get("sparsity")
    if not s:
        return []
    fid = s.get("fidelity") or {}
    line = (f"2:4 sparsity ({s['method']}): {len(s['layers'])} Linear layers masked, {s['sparsity']:.1%} of their "
            f"weights zero, {len(s['skipped'])} skipped")
    if fid:
        line += f"; output change vs the pruned dense model: relative error {fid['rel_error']:.2e}, top-1 agreement {fid['top1_agreement']:.1%}"
    out = [line]
    skipped = list(s["skipped"].items())
    out += [f"2:4 skipped `{name}`: {why}" for name, why in skipped[:10]]
    if len(skipped) > 10:
        out.append(f"2:4 skipped {len(skipped) - 10} more layers (see report.json)")
    out += [f"2:4 note: {n}" for n in s.get("notes", [])]
    return out


def render_markdown(r: dict[str, Any]) -> str:
    lines = [f"# secateurs pruning report: {r['model'].get('spec') or r['model']['class']}", "",
             f"secateurs {r['library_version']}, torch {r['torch_version']}, {r['created']}", ""]
    if r.get("input"):
        lines += [f"Input: {describe_input(r['input'])}", ""]
    lines += ["| quantity | before | after | after / before |", "|---|---:|---:|---:|"]
    lines += [f"| {q} | {b} | {a} | {k} |" for q, b, a, k in summary_rows(r)]
    g = r["groups"]
    lines += ["", f"Groups pruned: {g['pruned']} of {g['total']}; units removed: {g['units_removed']}.", ""]
    v = r.get("verification")
    if v:
        lines += [f"Verification ({v['mode']}): {'passed' if v['ok'] else 'FAILED'} - {v['message']}", ""]
    lines += [f"- note: {n}" for n in r.get("notes", [])]
    lines += [f"- {e}" for e in export_lines(r)]
    lines += _sensitivity_markdown(r)
    lines += ["", "## Settings", "", "```json", _json(r.get("settings")), "```", "",
              "## Per-layer output width", "", "| layer | before | after |", "|---|---:|---:|"]
    lines += [f"| `{x['name']}` | {x['before']} | {x['after']} |" for x in r.get("layers", [])]
    return "\n".join(lines) + "\n"


def _sensitivity_intro(sens: dict[str, Any]) -> str:
    applied = sens.get("overrides")
    used = (f"its overrides.json set the ratio of {len(applied)} group(s)" if applied is not None
            else "its overrides were not used (--overrides named another file)")
    return f"Sensitivity scan from `{sens['source']}`: each group pruned alone; {used}."


def _sensitivity_markdown(r: dict[str, Any]) -> list[str]:
    sens = r.get("sensitivity")
    if not sens:
        return []
    from secateurs.planning.sensitivity_result import SensitivityResult

    return ["", "## Sensitivity", "", _sensitivity_intro(sens), "", SensitivityResult.from_dict(sens["result"]).to_markdown()]


def _sensitivity_html(r: dict[str, Any], plots: bool) -> list[str]:
    sens = r.get("sensitivity")
    if not sens:
        return []
    from secateurs.planning.sensitivity_result import SensitivityResult

    e = html.escape
    result = SensitivityResult.from_dict(sens["result"])
    parts = ["<h2>Sensitivity</h2>", f"<p>{e(_sensitivity_intro(sens))} Metric: {e(result.metric)}; unpruned "
             f"{result.baseline:.4g}.</p>"]
    if plots:
        try:
            parts.append(_img(result.plot(), "metric against the fraction of units removed, one line per group"))
        except MissingDependencyError as exc:
            parts.append(f"<p>Plot unavailable: {e(str(exc))}</p>")
    head = "".join(f"<th>{r:g}</th>" for r in result.ratios)
    parts.append(f"<table><tr><th>group</th><th>kind</th><th>units</th>{head}</tr>")
    for key in result.keys():  # noqa: SIM118 (a SensitivityResult, not a dict)
        curve = {row.ratio: row for row in result.curve(key)}
        first = next(iter(curve.values()))
        cells = "".join(f"<td>{curve[x].metric:.4g} ({curve[x].drop:+.3g})</td>" if x in curve else "<td></td>"
                        for x in result.ratios)
        parts.append(f"<tr><td>{e(first.name)}</td><td>{e(first.kind)}</td><td>{first.units}</td>{cells}</tr>")
    parts.append("</table>")
    return parts


def _json(obj: Any) -> str:
    import json

    return json.dumps(obj, indent=1)


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}.ok{color:#10ac84}.bad{color:#ee5253}img{max-width:100%}
pre{background:#f4f4f4;padding:8px}"""


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def render_html(r: dict[str, Any], *, plots: bool = True) -> str:
    """One HTML file with no external resources; plots need matplotlib (a note replaces them when missing)."""
    e = html.escape
    title = f"secateurs pruning report: {r['model'].get('spec') or r['model']['class']}"
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{e(title)}</h1><p>secateurs {e(r['library_version'])}, torch {e(r['torch_version'])}, {e(r['created'])}</p>"]
    if r.get("input"):
        parts.append(f"<p>Input: {e(describe_input(r['input']))}</p>")
    parts.append("<table><tr><th>quantity</th><th>before</th><th>after</th><th>after / before</th></tr>")
    parts += [f"<tr><td>{e(q)}</td><td>{e(b)}</td><td>{e(a)}</td><td>{e(k)}</td></tr>" for q, b, a, k in summary_rows(r)]
    parts.append("</table>")
    g, v = r["groups"], r.get("verification")
    parts.append(f"<p>Groups pruned: {g['pruned']} of {g['total']}; units removed: {g['units_removed']}.</p>")
    if v:
        cls = "ok" if v["ok"] else "bad"
        parts.append(f"<p class='{cls}'>Verification ({e(v['mode'])}): {'passed' if v['ok'] else 'FAILED'} - {e(v['message'])}</p>")
    items = [f"note: {n}" for n in r.get("notes", [])] + export_lines(r)
    if items:
        parts.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in items) + "</ul>")
    if plots:
        try:
            from secateurs.reporting.plots import totals_plot, widths_plot

            parts.append(_img(totals_plot(r), "params, MACs and latency after pruning"))
            if r.get("layers"):
                parts.append(_img(widths_plot(r["layers"]), "per-layer width before and after"))
        except MissingDependencyError as exc:
            parts.append(f"<p>Plots unavailable: {e(str(exc))}</p>")
    parts += _sensitivity_html(r, plots)
    parts.append(f"<h2>Settings</h2><pre>{e(_json(r.get('settings')))}</pre>")
    parts.append("<h2>Per-layer output width</h2><table><tr><th>layer</th><th>before</th><th>after</th></tr>")
    parts += [f"<tr><td>{e(x['name'])}</td><td>{x['before']}</td><td>{x['after']}</td></tr>" for x in r.get("layers", [])]
    parts.append("</table></body></html>")
    return "\n".join(parts)
