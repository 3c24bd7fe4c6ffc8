"""The tiny configs of ``secateurs.testing.hf_tiny``: fields that must follow the shrunk ones do."""

from __future__ import annotations

import pytest

transformers = pytest.importorskip("transformers")
from transformers.models.auto.configuration_auto import CONFIG_MAPPING  # noqa: E402

from secateurs.testing.hf_tiny import tiny_kwargs  # noqa: E402


def test_per_layer_overrides_keep_only_the_layers_left():
    text = tiny_kwargs(CONFIG_MAPPING["gemma4"])["text_config"]
    assert text["num_hidden_layers"] == 2
    assert CONFIG_MAPPING["gemma4"]().text_config.per_layer_config  # overrides for layers 5, 11, ... by default
    assert text["per_layer_config"] == {}


def test_sizes_a_config_leaves_none_are_given_tiny_values():
    assert tiny_kwargs(CONFIG_MAPPING["esm"])["vocab_size"] == 512
    experts = {k: v for k, v in tiny_kwargs(CONFIG_MAPPING["dots1"]).items() if "expert" in k}
    assert experts == {"n_shared_experts": 1, "n_routed_experts": 4, "num_experts_per_tok": 2}


def test_widths_equal_to_the_hidden_size_by_default_shrink_with_it():
    kw = tiny_kwargs(CONFIG_MAPPING["efficientloftr"])
    assert kw["hidden_size"] == 192 and kw["out_features"][-1] == 192  # a validator requires them equal
