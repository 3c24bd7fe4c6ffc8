"""Latency lookup tables: per-layer latency measured once per device and width grid, and a predictor of a plan.

Each Conv2d / Linear layer of the model is timed alone (a fresh layer of the same kind, kernel, stride and input
size, random weights) at every pair of kept input/output width fractions of ``grid``; a plan's latency is predicted
as the sum of the bilinear interpolations of its layers at their pruned widths plus the rest of the model (measured
once: the full model minus the table's layers at full width, scaled by the fraction of MACs... kept constant here).
Entries are keyed by layer signature and device, so a table measured once serves every plan and every model with
the same layers (``LatencyTable.save``/``load``, JSON). Planning to a latency target then bisects on predictions and
times only the chosen plan, once, to report the prediction error.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from secateurs.errors import FileFormatError
from secateurs.graph.capture import eval_mode, normalize_inputs
from secateurs.selection.timing import interleaved_medians
from secateurs.targets import Timer

GRID = (0.25, 0.5, 0.75, 1.0)
_LAYERS = (nn.Conv2d, nn.Linear)


@dataclass(frozen=True)
class LayerSpec:
    """What a layer's latency depends on, besides its widths: kind, kernel, stride, padding, dilation, depthwise or
    not, bias, input shape without the channel dim."""

    kind: str
    cin: int
    cout: int
    rest: tuple[Any, ...]
    shape: tuple[int, ...]  # the input shape with the channels (conv: dim 1; linear: last dim) left out

    @property
    def key(self) -> str:
        return json.dumps([self.kind, self.cin, self.cout, list(self.rest), list(self.shape)])

    def build(self, cin: int, cout: int) -> tuple[nn.Module, torch.Tensor]:
        """A fresh layer with these widths and an input for it."""
        if self.kind == "linear":
            return nn.Linear(cin, cout, bias=bool(self.rest[0])), torch.randn(*self.shape, cin)
        k, s, p, d, depthwise, bias = self.rest
        groups = cin if depthwise else 1
        cout = cin if depthwise else cout
        conv = nn.Conv2d(cin, cout, tuple(k), tuple(s), tuple(p) if not isinstance(p, str) else p, tuple(d), groups,
                         bool(bias))
        return conv, torch.randn(self.shape[0], cin, *self.shape[1:])


def layer_spec(module: nn.Module, x: torch.Tensor) -> LayerSpec | None:
    """The spec of a Conv2d (plain or depthwise) or Linear layer seen with input ``x``; None for other layers."""
    if isinstance(module, nn.Linear):
        return LayerSpec("linear", module.in_features, module.out_features, (module.bias is not None,), tuple(x.shape[:-1]))
    if isinstance(module, nn.Conv2d) and x.ndim == 4:
        depthwise = module.groups == module.in_channels and module.groups > 1
        if module.groups != 1 and not depthwise:
            return None
        rest = (list(module.kernel_size), list(module.stride), module.padding if isinstance(module.padding, str)
                else list(module.padding), list(module.dilation), depthwise, module.bias is not None)
        return LayerSpec("conv2d", module.in_channels, module.out_channels, rest, (x.shape[0], *x.shape[2:]))
    return None


def layer_specs(model: nn.Module, example_inputs: Any) -> dict[str, LayerSpec]:
    """``{module path: spec}`` of the model's table layers, from one forward pass with hooks."""
    specs: dict[str, LayerSpec] = {}
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, _LAYERS):
            def hook(mod: nn.Module, inputs: Any, _out: Any, _name: str = name) -> None:
                if _name not in specs and inputs and isinstance(inputs[0], torch.Tensor):
                    spec = layer_spec(mod, inputs[0])
                    if spec is not None:
                        specs[_name] = spec
            hooks.append(m.register_forward_hook(hook))
    args, kwargs = normalize_inputs(example_inputs)
    try:
        with torch.no_grad(), eval_mode(model):
            model(*args, **kwargs)
    finally:
        for h in hooks:
            h.remove()
    return specs


def _widths(full: int, grid: Sequence[float]) -> list[int]:
    return sorted({max(1, int(round(f * full))) for f in grid})


@dataclass
class LatencyTable:
    """Measured latencies: ``entries[spec key] = {"cin": [...], "cout": [...], "ms": [[...]]}`` for one device."""

    device: str = "cpu"
    threads: int = 1
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    timed: int = 0  # layers timed by this object (not loaded)

    def measure(self, specs: dict[str, LayerSpec], timer: Timer, grid: Sequence[float] = GRID, repeats: int = 5,
                warmup: int = 1) -> None:
        """Time every spec not in the table yet at every (in, out) width pair of ``grid``."""
        for spec in {s.key: s for s in specs.values()}.values():
            if spec.key in self.entries:
                continue
            cins = _widths(spec.cin, grid)
            couts = cins if spec.rest and spec.kind == "conv2d" and spec.rest[4] else _widths(spec.cout, grid)
            cells = [(i, o) for i in cins for o in couts]
            mods = []
            for i, o in cells:
                layer, x = spec.build(i, o)
                mods.append((layer.eval(), x))
            with torch.no_grad():
                ms = [interleaved_medians([m], (x,), {}, timer, repeats, warmup)[0] for m, x in mods]
            self.timed += len(cells)
            self.entries[spec.key] = {"cin": cins, "cout": couts,
                                      "ms": np.array(ms, dtype=float).reshape(len(cins), len(couts)).tolist()}

    def predict(self, spec: LayerSpec, cin: int, cout: int) -> float:
        """Bilinear interpolation (linear extrapolation below the smallest width) of the layer's latency."""
        e = self.entries[spec.key]
        grid = np.array(e["ms"], dtype=float)
        ci, co = np.array(e["cin"], dtype=float), np.array(e["cout"], dtype=float)
        if spec.kind == "conv2d" and spec.rest[4]:  # depthwise: one width
            return float(np.interp(cin, ci, np.diag(grid)))
        rows = np.array([np.interp(cout, co, grid[r]) for r in range(len(ci))])
        return float(np.interp(cin, ci, rows))

    def to_dict(self) -> dict[str, Any]:
        return {"format": "secateurs-latency-table", "version": 1, "device": self.device, "threads": self.threads,
                "entries": self.entries}

    def save(self, path: str | os.PathLike[str]) -> None:
        from secateurs.errors import InvalidArgumentError

        if not str(path).endswith(".json"):
            raise InvalidArgumentError(f"a latency table is a .json file, got {path}")
        with open(path, "w") as f:
            json.dump(self.to_dict(), f)

    @staticmethod
    def load(path: str | os.PathLike[str]) -> LatencyTable:
        try:
            with open(path) as f:
                d = json.load(f)
        except (OSError, ValueError, RecursionError) as exc:
            raise FileFormatError(f"{path}: not a readable latency table ({str(exc)[:100]})") from None
        if not isinstance(d, dict) or d.get("format") != "secateurs-latency-table" or not isinstance(d.get("entries"), dict):
            raise FileFormatError(f"{path}: not a secateurs latency table")
        for key, e in d["entries"].items():
            ok = isinstance(e, dict) and all(isinstance(e.get(k), list) for k in ("cin", "cout", "ms"))
            if not ok or np.array(e["ms"], dtype=float).shape != (len(e["cin"]), len(e["cout"])):
                raise FileFormatError(f"{path}: entry {key[:80]} is malformed")
        return LatencyTable(str(d.get("device", "cpu")), int(d.get("threads", 1)), d["entries"])


@dataclass
class Predictor:
    """Predicted latency of pruned copies: table layers at their pruned widths plus the measured rest (the ops
    between the table layers: norms, activations, adds), scaled by the activations the layers read, which those
    ops produce and which shrink with the channels."""

    table: LatencyTable
    specs: dict[str, LayerSpec]
    rest_ms: float
    full_ms: float  # measured latency of the unpruned model

    @staticmethod
    def build(model: nn.Module, example_inputs: Any, table: LatencyTable, timer: Timer, repeats: int,
              warmup: int) -> Predictor:
        specs = layer_specs(model, example_inputs)
        args, kwargs = normalize_inputs(example_inputs)
        with eval_mode(model), torch.no_grad():
            full = interleaved_medians([model], args, kwargs, timer, repeats, warmup)[0]
        layers = sum(table.predict(s, s.cin, s.cout) for s in specs.values())
        return Predictor(table, specs, max(0.0, full - layers), full)

    def predict(self, pruned_meta: nn.Module) -> float:
        """Predicted latency of ``pruned_meta`` (a pruned copy, on any device, meta included)."""
        modules = dict(pruned_meta.named_modules())
        total, read, read_full = 0.0, 0, 0
        for name, spec in self.specs.items():
            m = modules.get(name)
            cin = spec.cin
            if isinstance(m, nn.Linear):
                cin = m.in_features
                total += self.table.predict(spec, m.in_features, m.out_features)
            elif isinstance(m, nn.Conv2d):
                cin = m.in_channels
                total += self.table.predict(spec, m.in_channels, m.out_channels)
            elements = math.prod(spec.shape)
            read, read_full = read + cin * elements, read_full + spec.cin * elements
        return total + self.rest_ms * (read / read_full if read_full else 1.0)
