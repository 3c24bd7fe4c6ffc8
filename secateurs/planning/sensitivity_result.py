"""SensitivityResult: the table of a sensitivity scan, its plot, and per-group ratios fed back into a plan."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from secateurs.errors import FileFormatError, InvalidArgumentError

_MAX_LEGEND = 12


@dataclass
class SensitivityRow:
    key: str  # usable as an overrides key: "group:NAME" or a module pattern
    name: str
    kind: str
    units: int
    ratio: float  # fraction of the target's units asked to be removed
    removed: int  # units actually removed (after rounding and min_keep)
    metric: float
    macs: float  # fraction of the model's MACs kept (cost model)
    params: float  # fraction of the model's parameters kept
    drop: float = 0.0  # metric lost against the unpruned model (positive = worse)
    layers: str = ""  # modules producing the pruned units (conv/linear outputs)


_ROW_FIELDS = set(SensitivityRow.__dataclass_fields__)


@dataclass
class SensitivityResult:
    baseline: float
    ratios: list[float]
    rows: list[SensitivityRow] = field(repr=False)
    metric: str  # what the metric measures
    higher_is_better: bool = True
    importance: str = "l2"

    def keys(self) -> list[str]:
        return list(dict.fromkeys(r.key for r in self.rows))

    def curve(self, key: str) -> list[SensitivityRow]:
        rows = [r for r in self.rows if r.key == key]
        if not rows:
            raise InvalidArgumentError(f"no sensitivity rows for {key!r}; known keys: {self.keys()[:5]}...")
        return sorted(rows, key=lambda r: r.ratio)

    def ratios_for(self, max_drop: float) -> dict[str, float]:
        """Per key, the largest ratio such that it and every smaller ratio lose at most ``max_drop`` (0.0 when
        even the smallest ratio loses more)."""
        if isinstance(max_drop, bool) or not isinstance(max_drop, (int, float)) or max_drop < 0:
            raise InvalidArgumentError(f"max_drop must be a non-negative number (metric units), got {max_drop!r}")
        out = {}
        for key in self.keys():
            best = 0.0
            for row in self.curve(key):
                if row.drop > max_drop:
                    break
                best = row.ratio
            out[key] = best
        return out

    def overrides(self, max_drop: float) -> dict[str, float]:
        """``sc.plan(model, x, ratio=0.0, overrides=result.overrides(max_drop=0.01))`` prunes every group as far
        as it lost at most ``max_drop`` when pruned alone (drops of several groups add up roughly, so check
        the metric of the combined plan)."""
        return self.ratios_for(max_drop)

    def to_dict(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "ratios": list(self.ratios), "metric": self.metric,
                "higher_is_better": self.higher_is_better, "importance": self.importance,
                "rows": [asdict(r) for r in self.rows]}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> SensitivityResult:
        """The inverse of ``to_dict`` (e.g. ``sensitivity.json`` written by ``secateurs sensitivity``)."""
        try:
            rows = [SensitivityRow(**{k: v for k, v in r.items() if k in _ROW_FIELDS}) for r in d["rows"]]
            return SensitivityResult(float(d["baseline"]), [float(r) for r in d["ratios"]], rows, str(d["metric"]),
                                     bool(d.get("higher_is_better", True)), str(d.get("importance", "")))
        except (KeyError, TypeError, ValueError) as exc:
            raise FileFormatError(f"not a sensitivity result: {exc}") from exc

    def to_markdown(self) -> str:
        head = ["group", "layers", "kind", "units"] + [f"{r:g}" for r in self.ratios]
        lines = [f"Metric: {self.metric}; unpruned {self.baseline:.4g}. Cells: metric (drop) when only that group "
                 f"loses the given fraction of its units ({self.importance} ranking).", "",
                 "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for key in self.keys():
            curve = {r.ratio: r for r in self.curve(key)}
            first = next(iter(curve.values()))
            cells = [f"{curve[r].metric:.4g} ({curve[r].drop:+.3g})" if r in curve else "" for r in self.ratios]
            lines.append("| " + " | ".join([f"`{first.name}`", first.layers, first.kind, str(first.units), *cells]) + " |")
        return "\n".join(lines) + "\n"

    def plot(self, path: str | os.PathLike[str] | None = None) -> bytes:
        """PNG of the metric against the ratio, one line per group (the most sensitive ones labelled);
        written to ``path`` when given. Matplotlib's Agg backend: no display needed."""
        from secateurs._plotting import png as _png
        from secateurs._plotting import pyplot as _pyplot

        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(7.5, 4.5))
        worst = sorted(self.keys(), key=lambda k: -max(r.drop for r in self.curve(k)))
        labelled = set(worst[:_MAX_LEGEND])
        cmap = plt.get_cmap("tab20" if len(self.keys()) > 10 else "tab10")
        for i, key in enumerate(self.keys()):
            curve = self.curve(key)
            label = curve[0].layers or curve[0].name
            ax.plot([0.0] + [r.ratio for r in curve], [self.baseline] + [r.metric for r in curve],
                    marker="o", ms=3, color=cmap(i % cmap.N), lw=1.2 if key in labelled else 0.6, alpha=1.0 if key in labelled else 0.35,
                    label=label if key in labelled else None)
        ax.set_xlabel("fraction of the group's units removed (alone)")
        ax.set_ylabel("output cosine similarity" if self.metric.startswith("cosine similarity") else self.metric[:40])
        ax.set_title(f"Sensitivity ({self.importance} ranking)")
        ax.grid(alpha=0.3)
        if labelled:
            ax.legend(fontsize=6, loc="best")
        data = _png(fig)
        if path is not None:
            with open(path, "wb") as f:
                f.write(data)
        return data
