"""torchvision classification models as the zoo tests and ``bench/zoo_table.py`` build them.

torchvision is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

from typing import Any

import torch

# Models checked by the default (not slow) test run: one per architecture family.
FAST = ("resnet18", "mobilenet_v3_small", "shufflenet_v2_x0_5", "squeezenet1_0", "efficientnet_b0",
        "regnet_y_400mf", "convnext_tiny", "swin_t", "vit_b_16")

# Smallest input each family accepts (fixed token or partition grids need 224).
_INPUT = {"vit": 224, "maxvit": 224, "inception": 75, "swin": 64}
_DEFAULT_INPUT = 64


def classification_models() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def input_size(name: str) -> int:
    for prefix, size in _INPUT.items():
        if name.startswith(prefix):
            return size
    return _DEFAULT_INPUT


def build(name: str, **overrides: Any) -> torch.nn.Module:
    """Random-weight model in eval mode with realistic activations.

    All-zero weight matrices (ViT's head) get small random values, and BatchNorm running statistics
    are set from one training-mode batch: with the default statistics (mean 0, var 1) activations of
    deep random networks shrink towards 0 (1e-14 at EfficientNet's output) and the numeric
    comparison against the masked original would test almost nothing.

    GoogLeNet and Inception-v3 are built without their auxiliary heads: those only run in training
    mode, so an eval-mode graph never sees them and pruning would leave them at the old widths.
    """
    import torchvision

    kwargs: dict[str, Any] = dict(overrides)
    if name in ("googlenet", "inception_v3"):
        kwargs.setdefault("aux_logits", False)
        kwargs.setdefault("init_weights", False)
    model = torchvision.models.get_model(name, weights=None, **kwargs).eval()
    with torch.no_grad():  # a zero classifier would make the numeric comparison vacuous
        for p in model.parameters():
            if p.dim() >= 2 and not p.any():
                p.normal_(0.0, 0.02)
    calibrate_batch_norm_(model, torch.randn(2, 3, input_size(name), input_size(name)))
    return model


def calibrate_batch_norm_(model: torch.nn.Module, x: torch.Tensor) -> None:
    """Set every BatchNorm's running statistics to those of the batch ``x``; leaves the model in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    saved = [(m, m.momentum) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: one batch gives exactly its statistics
    model.train()
    try:
        with torch.no_grad():
            model(x)
    finally:
        for m, momentum in saved:
            m.momentum = momentum
        model.eval()


def by_size(names: list[str]) -> list[str]:
    """Smallest models first (parameter counts from torchvision's weight metadata; nothing is downloaded)."""
    import torchvision

    def n_params(name: str) -> int:
        try:
            return int(torchvision.models.get_model_weights(name).DEFAULT.meta["num_params"])
        except (KeyError, ValueError, AttributeError):
            return 1 << 40

    return sorted(names, key=n_params)
