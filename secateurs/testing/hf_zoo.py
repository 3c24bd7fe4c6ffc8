"""One transformers model type through the whole path: tiny model, prune with defaults, verify, stock reload.

``check_type(model_type)`` builds the tiny model of ``hf_tiny``, prunes it with ``ratio={"heads": 0.25, "ffn": 0.3}``
(verified against the masked original by ``sc.prune``), writes it with ``save_pretrained`` and reads it back with
the stock ``from_pretrained`` of its class, and compares the outputs (fp32). Mixture-of-experts types are also
pruned inside every expert (``{"ffn": 0.3}``) and by whole experts (``{"experts": 0.25}``), each reloaded.
Used by ``tests/zoo/test_hf_zoo.py`` and ``bench/hf_zoo_table.py``.
"""

from __future__ import annotations

import copy
import tempfile
import traceback
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

DEFAULT_RATIO = {"heads": 0.25, "ffn": 0.3}
RELOAD_TOLERANCE = 1e-5  # relative max error of the reloaded model's outputs
_EXPERT_FIELDS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts")


@dataclass
class Attempt:
    """One pruning request on one model type."""

    ratio: dict[str, float]
    status: str = "error"  # "exact" | "structural" | "refused" | "nothing" | "error"
    reason: str = ""
    removed: dict[str, int] = field(default_factory=dict)  # unit kind -> units removed
    stock_config: str = ""  # why a stock config cannot describe the result ("" when it can)
    reload: str = ""  # "same" | "differs" | "fails" | "" (not tried)
    reload_error: float | None = None
    reload_reason: str = ""
    kept_by_config: dict[str, str] = field(default_factory=dict)  # unit kind -> why the config kept units asked

    @property
    def ok(self) -> bool:
        return self.status in ("exact", "partial", "structural") and self.reload == "same"


@dataclass
class TypeResult:
    model_type: str
    built: bool = False
    skip_reason: str = ""
    params: int = 0
    moe: bool = False
    attempts: list[Attempt] = field(default_factory=list)
    inputs: str = ""  # inputs added to the synthesised ones, and why

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_moe(model: nn.Module) -> bool:
    """An expert count above 1 in the config (or a sub-config) and modules named like experts in the model (a tiny
    config may leave only dense layers)."""
    config: Any = getattr(model, "config", None)
    configs = [config, *(v for v in vars(config).values() if hasattr(v, "to_dict") and hasattr(v, "model_type"))]
    counted = any(isinstance(getattr(c, f, None), int) and getattr(c, f) > 1 for c in configs for f in _EXPERT_FIELDS)
    return counted and any("expert" in name for name, _ in model.named_modules())


def check_type(model_type: str, ratio: dict[str, float] | None = None, moe_checks: bool = True) -> TypeResult:
    from secateurs.testing.hf_tiny import build

    result = TypeResult(model_type)
    try:
        tiny = build(model_type)
    except Exception as exc:  # a type that cannot be built offline, or run on the inputs synthesised
        result.skip_reason = _short(exc)
        return result
    result.built = True
    result.params = sum(p.numel() for p in tiny.model.parameters())
    result.moe = is_moe(tiny.model)
    ratios = [ratio or DEFAULT_RATIO]
    if result.moe and moe_checks:
        ratios += [{"ffn": 0.3}, {"experts": 0.25}]
    inputs = tiny.inputs
    first = attempt(copy.deepcopy(tiny.model), inputs, ratios[0])
    masked = _with_mask(tiny.model, inputs) if first.reason.startswith("CaptureError") else None
    if masked is not None:  # forward() builds no mask while torch.export traces it (LongT5): pass one, as users do
        first = attempt(copy.deepcopy(tiny.model), masked, ratios[0])  # what stops it with a mask, if anything
        inputs, result.inputs = masked, "attention_mask of ones added (capture needs one)"
    result.attempts.append(first)
    for r in ratios[1:]:
        result.attempts.append(attempt(copy.deepcopy(tiny.model), inputs, r))
    return result


def _with_mask(model: nn.Module, inputs: dict[str, Any]) -> dict[str, Any] | None:
    import inspect

    main = inputs.get(getattr(model, "main_input_name", "input_ids"))
    if "attention_mask" in inputs or "attention_mask" not in inspect.signature(model.forward).parameters:
        return None
    if not isinstance(main, torch.Tensor) or main.ndim != 2 or main.is_floating_point():
        return None
    return {**inputs, "attention_mask": torch.ones_like(main)}


def attempt(model: nn.Module, inputs: dict[str, Any], ratio: dict[str, float]) -> Attempt:
    from secateurs.api import prune
    from secateurs.errors import SecateursError, StockConfigWarning

    out = Attempt(dict(ratio))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            report = prune(model, inputs, ratio=ratio)
        except SecateursError as exc:
            out.status, out.reason = "refused", _short(exc)
            return out
        except Exception as exc:  # a bug, not a refusal
            out.status, out.reason = "error", _short(exc) + " | " + traceback.format_exc(limit=-3).replace("\n", " ")
            return out
    stock = [str(w.message) for w in caught if issubclass(w.category, StockConfigWarning)]
    out.stock_config = stock[0][:600] if stock else ""
    for change in report.plan.settings.get("count_constraints") or []:
        for kind, asked, used in zip(change["kinds"], change["kept_asked"], change["kept_used"], strict=True):
            if used > asked:
                out.kept_by_config.setdefault(kind, str(change["why"])[:300])
    for g in report.plan.groups:
        if g.removed:
            out.removed[g.kind] = out.removed.get(g.kind, 0) + len(g.removed)
    for gone in report.plan.dropped_layers.values():
        out.removed["layers"] = out.removed.get("layers", 0) + len(gone)
    if not out.removed:
        out.status, out.reason = "nothing", "; ".join(sorted({str(w.message)[:200] for w in caught})[:2])
        return out
    v = report.verification
    out.status = v.mode if v is not None and v.ok else "error"
    _reload(model, inputs, out)
    return out


def _reload(model: nn.Module, inputs: dict[str, Any], out: Attempt) -> None:
    """save_pretrained -> the stock class's from_pretrained -> same outputs?"""
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model.save_pretrained(tmp)  # type: ignore[operator]
            fresh = type(model).from_pretrained(tmp).eval()  # type: ignore[attr-defined]
            with torch.no_grad():
                err = max_relative_error(model(**inputs), fresh(**inputs))
        except Exception as exc:  # transformers refused the checkpoint or the config
            out.reload, out.reload_reason = "fails", _short(exc)
            return
    out.reload_error = err
    out.reload = "same" if err <= RELOAD_TOLERANCE else "differs"


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    if hasattr(value, "to_tuple"):
        return _tensors(value.to_tuple())
    return []


def max_relative_error(a: Any, b: Any) -> float:
    """Largest ``max|x - y| / max|x|`` over the floating-point tensors of two outputs (inf when they differ in kind)."""
    xs, ys = _tensors(a), _tensors(b)
    if len(xs) != len(ys):
        return float("inf")
    worst = 0.0
    for x, y in zip(xs, ys, strict=True):
        if x.shape != y.shape:
            return float("inf")
        if not x.is_floating_point():
            worst = max(worst, 0.0 if torch.equal(x, y) else float("inf"))
            continue
        scale = float(x.abs().max()) if x.numel() else 0.0
        worst = max(worst, float((x - y).abs().max()) / max(scale, 1e-12) if x.numel() else 0.0)
    return worst


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"
