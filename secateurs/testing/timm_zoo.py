"""timm architecture families as the timm zoo tests and ``bench/zoo_timm.py`` build them.

A *family* is an entry module of timm's registry (``timm.list_modules()``: ``resnet``, ``swin_transformer``,
...); each is represented by its smallest registered model (fewest parameters, counted on the meta device),
built with random weights. timm is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from secateurs.testing.zoo import calibrate_batch_norm_

# Sizes tried, smallest first, for models whose input size is fixed at construction (``img_size=``) and for the
# others (any size works as long as the strides and windows fit).
_SIZES = (64, 96, 128, 160, 192, 224, 256)


def families() -> list[str]:
    """Every entry module of timm's model registry."""
    import timm

    return sorted(timm.list_modules())


def models_of(family: str) -> list[str]:
    import timm

    return sorted(timm.list_models(module=family))


def n_params(name: str) -> int | None:
    """Parameters of ``name`` built on the meta device (nothing allocated), None if it does not build there."""
    import timm

    try:
        with torch.device("meta"):
            model = timm.create_model(name, pretrained=False)
    except Exception:
        return None
    return sum(p.numel() for p in model.parameters())


@functools.cache
def smallest(family: str) -> str:
    """The registered model of ``family`` with the fewest parameters (ties: first by name)."""
    sizes = [(n, name) for name in models_of(family) if (n := n_params(name)) is not None]
    if not sizes:
        raise ValueError(f"no model of timm family {family!r} builds on the meta device")
    return min(sizes)[1]


def _create(name: str, size: int | None) -> torch.nn.Module:
    import timm

    kwargs: dict[str, Any] = {} if size is None else {"img_size": size}
    return timm.create_model(name, pretrained=False, **kwargs).eval()


def _runs(model: torch.nn.Module, size: int) -> bool:
    try:
        with torch.no_grad():
            model(torch.randn(1, 3, size, size))
    except Exception:
        return False
    return True


def _fixed(name: str) -> bool:
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    return bool(cfg is not None and cfg.fixed_input_size)


def _default_size(name: str) -> int:
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    return int(cfg.input_size[-1]) if cfg is not None and cfg.input_size else 224


def choose_input(name: str) -> tuple[torch.nn.Module, int]:
    """The model and the smallest square input size it runs at: built with ``img_size=S`` when its input size is
    fixed at construction (position embeddings, windows), else built once and run at growing sizes."""
    default = _default_size(name)
    sizes = [s for s in _SIZES if s < default] + [default]
    if _fixed(name):
        for size in sizes[:-1]:
            try:
                model = _create(name, size)
            except Exception:
                break  # no img_size argument, or a size the architecture refuses: use the default
            if _runs(model, size):
                return model, size
        return _create(name, None), default
    model = _create(name, None)
    for size in sizes:
        if _runs(model, size):
            return model, size
    return model, default


def build(name: str, seed: int = 0) -> tuple[torch.nn.Module, torch.Tensor]:
    """Random-weight ``name`` in eval mode and a 1x3xSxS input, with realistic activations (zero weight matrices
    randomised, BatchNorm statistics from one random batch, as ``secateurs.testing.zoo.build`` does)."""
    torch.manual_seed(seed)
    model, size = choose_input(name)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2 and not p.any():
                p.normal_(0.0, 0.02)
    calibrate_batch_norm_(model, torch.randn(2, 3, size, size))
    torch.manual_seed(seed + 1)
    return model, torch.randn(1, 3, size, size)


# Families checked by the default (not slow) test run, with their smallest model: plain ones and ones whose
# forward() keeps sizes in attributes (rewritten, or their groups left out), small enough to run in seconds.
FAST = {
    "vision_transformer": "test_vit", "resnet": "test_resnet", "convnext": "test_convnext",
    "nfnet": "test_nfnet",  # weight standardisation: batch statistics make its conv inputs structural-only
    "maxxvit": "test_coatnet", "vision_transformer_relpos": "test_vit_relpos",
    "edgenext": "edgenext_xx_small", "cspnet": "cs3darknet_focus_s", "levit": "levit_128s",
    "efficientformer": "efficientformer_l1",
    "rexnet": "rexnet_100",  # float32 rounding above 1e-4 (one thread), exact in float64
}
