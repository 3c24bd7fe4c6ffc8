"""Compensation on tiny random Hugging Face decoders (no downloads): error goes down, biases survive saving."""

from __future__ import annotations

import pytest
import torch

import secateurs as sc
from secateurs.testing.hf import TINY, _ids

pytest.importorskip("transformers")


def calibration(inputs: dict) -> list[dict]:
    return [{"input_ids": _ids(s), "use_cache": False} for s in range(1, 5)] + [inputs]


@pytest.mark.parametrize("family,importance,method", [
    ("llama", "wanda", "lstsq"), ("llama", "fluctuation", "bias"), ("gpt2", "wanda", "lstsq"),
])
def test_compensation_reduces_error_on_tiny_decoders(family: str, importance: str, method: str) -> None:
    torch.manual_seed(0)
    tiny = TINY[family]()
    r = sc.prune(tiny.model, tiny.inputs, ratio=0.25, importance=importance, calibration=calibration(tiny.inputs),
                 compensate=method)
    c = r.compensation
    assert c is not None and c.error_before is not None and c.error_after is not None
    assert c.error_after < c.error_before
    if method == "lstsq":
        assert c.error_after < 0.9 * c.error_before
    if family == "llama":  # o_proj/down_proj had no bias: Llama's config flags now ask for them
        assert c.config_flags == {"attention_bias": True, "mlp_bias": True}
        assert tiny.model.config.attention_bias and tiny.model.config.mlp_bias
        attn = tiny.model.model.layers[0].self_attn
        assert attn.o_proj.bias is not None and attn.q_proj.bias is not None  # every projection the flags cover
    if family == "gpt2":  # the tied lm_head keeps its (embedding) weight; only a bias is fit
        assert any("tied" in n for n in c.notes)
        assert tiny.model.lm_head.weight is tiny.model.transformer.wte.weight


def test_llama_bias_compensation_survives_save_pretrained(tmp_path) -> None:
    torch.manual_seed(0)
    tiny = TINY["llama"]()
    model = tiny.model
    r = sc.prune(model, tiny.inputs, ratio=0.25, importance="wanda", calibration=calibration(tiny.inputs),
                 compensate="bias", ignore=["lm_head"])  # the hidden-size group would give lm_head a bias
    assert r.compensation is not None and not r.compensation.notes  # every new bias is covered by a config flag
    model.save_pretrained(tmp_path)
    loaded = type(model).from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**tiny.inputs).logits, model(**tiny.inputs).logits)


def test_new_bias_without_config_flag_is_reported() -> None:
    torch.manual_seed(0)
    tiny = TINY["qwen2"]()  # Qwen2's o_proj/down_proj have hard-coded bias=False
    r = sc.prune(tiny.model, tiny.inputs, ratio=0.25, importance="wanda", calibration=calibration(tiny.inputs),
                 compensate="bias", ignore=["lm_head"])
    assert r.compensation is not None
    assert any("from_pretrained would drop" in n and "down_proj" in n for n in r.compensation.notes)
