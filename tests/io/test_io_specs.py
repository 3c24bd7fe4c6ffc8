import sys

import pytest
import torch

from secateurs.errors import InvalidArgumentError, MissingDependencyError
from secateurs.io.inputs import InputSpec
from secateurs.io.specs import resolve


@pytest.mark.parametrize("spec", ["resnet18", "nope:thing", "torchvision:", "a b:c", "secateurs.testing.models:"])
def test_unknown_model_spec_names_the_accepted_forms(spec):
    with pytest.raises(InvalidArgumentError, match="model spec|unknown"):
        resolve(spec)


def test_factory_spec_builds_an_eval_model():
    src = resolve("secateurs.testing.models:TinyViT")
    model = src.build()
    assert src.kind == "factory" and not model.training and src.default_input is None


@pytest.mark.parametrize("spec,match", [("secateurs.nope:f", "cannot import"), ("secateurs.testing.models:missing", "no callable")])
def test_bad_factory_spec(spec, match):
    with pytest.raises(InvalidArgumentError, match=match):
        resolve(spec)


@pytest.mark.parametrize("spec,module", [("timm:resnet18", "timm"), ("torchvision:resnet18", "torchvision.models")])
def test_missing_optional_dependency_says_how_to_install(monkeypatch, spec, module):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'secateurs\[vision\]'"):
        resolve(spec)


@pytest.mark.slow
def test_unknown_torchvision_name_suggests_close_matches():
    pytest.importorskip("torchvision")
    with pytest.raises(InvalidArgumentError, match="resnet18"):
        resolve("torchvision:resnet81")


def test_hf_spec_needs_a_local_directory(tmp_path):
    with pytest.raises(InvalidArgumentError, match="offline"):
        resolve(f"hf:{tmp_path}")


@pytest.mark.slow
def test_hf_spec_builds_from_a_local_config(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32, architectures=["BertModel"])
    cfg.save_pretrained(tmp_path)
    src = resolve(f"hf:{tmp_path}")
    assert src.default_input == InputSpec(seq_len=128, vocab_size=50)
    model = src.build()
    assert model(**src.default_input.make(batch=2)).last_hidden_state.shape == (2, 128, 16)


@pytest.mark.parametrize("text", ["1,3,a", "0,3,8,8", "", "1,-3", ",,"])
def test_bad_input_shape(text):
    with pytest.raises(InvalidArgumentError, match="input shape"):
        InputSpec.parse_shape(text)


def test_input_spec_makes_batches_and_round_trips():
    spec = InputSpec.parse_shape("1,3,16,16")
    assert spec.make(batch=4).shape == (4, 3, 16, 16)
    assert InputSpec.from_dict(spec.to_dict()) == spec
    text = InputSpec(seq_len=7, vocab_size=11)
    ids = text.make(batch=2)["input_ids"]
    assert ids.shape == (2, 7) and ids.dtype == torch.long and int(ids.max()) < 11
    assert InputSpec.from_dict(text.to_dict()) == text
    with pytest.raises(InvalidArgumentError):
        InputSpec(seq_len=0)
