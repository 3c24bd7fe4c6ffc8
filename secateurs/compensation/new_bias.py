"""Creating a bias on a layer that has none, so that it survives saving and loading.

``secateurs.save``/``load`` record created biases in the plan and recreate them (see ``replay``).
Hugging Face ``save_pretrained``/``from_pretrained`` only keep a bias the config asks for: for model types
with a config flag that gives a family of projections a bias (Llama ``attention_bias``/``mlp_bias``,
Qwen3 ``attention_bias``) the flag is set and every projection it covers gets a zero bias; for other
HF model types (Mistral, Qwen2 ``o_proj``, every ``lm_head``) a note says ``from_pretrained`` would
drop the new bias.
"""

from __future__ import annotations

import torch
from torch import nn

from secateurs.calibration.features import feature_map

# config.model_type -> config flag -> names of the projections whose bias that flag switches on
HF_BIAS_FLAGS: dict[str, dict[str, tuple[str, ...]]] = {
    "llama": {"attention_bias": ("q_proj", "k_proj", "v_proj", "o_proj"), "mlp_bias": ("gate_proj", "up_proj", "down_proj")},
    "qwen3": {"attention_bias": ("q_proj", "k_proj", "v_proj", "o_proj")},
}


def zero_bias_(module: nn.Module) -> int:
    """Give ``module`` (Linear, Conv, HF Conv1D) a zero bias Parameter; returns its size."""
    fmap = feature_map(module)
    weight = module._parameters["weight"]
    assert fmap is not None and weight is not None  # callers pass consumer layers only
    size = int(weight.shape[1 if fmap.in_dim == 0 else 0])
    module.bias = nn.Parameter(torch.zeros(size, dtype=weight.dtype, device=weight.device),
                               requires_grad=weight.requires_grad)
    return size


def _hf_flag(model: nn.Module, path: str) -> tuple[object, str, tuple[str, ...]] | None:
    config = getattr(model, "config", None)
    flags = HF_BIAS_FLAGS.get(str(getattr(config, "model_type", "")), {})
    name = path.rpartition(".")[2]
    for flag, names in flags.items():
        if name in names and hasattr(config, flag):
            return config, flag, names
    return None


def add_bias_(model: nn.Module, path: str, added: dict[str, int], flags: dict[str, bool], notes: list[str]) -> None:
    """Create the bias of the layer at ``path`` (and, under an HF config flag, of every layer it covers)."""
    hit = _hf_flag(model, path)
    if hit is None:
        added[path] = zero_bias_(model.get_submodule(path))
        if hasattr(model, "save_pretrained") and hasattr(model, "config"):
            notes.append(f"{path}: new bias that {type(model).__name__}.from_pretrained would drop (no config flag "
                         "for it); save with secateurs.save, which records and recreates it")
        return
    config, flag, names = hit
    setattr(config, flag, True)
    flags[flag] = True
    for p, m in model.named_modules():
        if p.rpartition(".")[2] in names and feature_map(m) is not None and m._parameters.get("bias") is None:
            added[p] = zero_bias_(m)
