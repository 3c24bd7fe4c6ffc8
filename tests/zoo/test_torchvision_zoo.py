"""Every torchvision classification model prunes at ratio 0.3 and verifies, or is refused with a reason.

The default run checks one model per family (``secateurs.testing.zoo.FAST``); ``-m slow`` runs them all.
"""

import pytest
import torch

pytest.importorskip("torchvision")

from zoo_checks import prune_and_check  # noqa: E402

import secateurs as sc  # noqa: E402
from secateurs.testing import zoo  # noqa: E402

# Models secateurs refuses, with a substring of the reason its SecateursError must give.
REFUSED: dict[str, str] = {}
# Smaller builds of fixed-grid models so the default run stays fast (same layers, fewer tokens).
FAST_BUILD = {"vit_b_16": ({"image_size": 32}, 32)}
# Models whose pruned groups include a LayerNorm/softmax over the pruned dim: checked structurally.
STRUCTURAL_PREFIXES = ("convnext", "swin", "vit", "maxvit")


def _check(name: str, build_kwargs: dict | None = None, size: int | None = None) -> None:
    model = zoo.build(name, **(build_kwargs or {}))
    size = size or zoo.input_size(name)
    x = torch.randn(1, 3, size, size)
    report = prune_and_check(model, x, REFUSED.get(name))
    if report is None:
        return
    # LayerNorm/softmax groups are checked structurally; their other groups still numerically ("partial")
    expected = ("partial", "structural") if name.startswith(STRUCTURAL_PREFIXES) else ("exact",)
    assert report.verification is not None and report.verification.mode in expected
    assert report.params_after < 0.9 * report.params_before
    assert report.macs_after < report.macs_before


@pytest.mark.parametrize("name", zoo.FAST)
def test_fast_zoo(name):
    kwargs, size = FAST_BUILD.get(name, ({}, None))
    _check(name, kwargs, size)


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("name", [n for n in zoo.classification_models() if n not in zoo.FAST or n in FAST_BUILD])
def test_full_zoo(name):
    _check(name)


def test_fast_list_names_real_models():
    assert set(zoo.FAST) <= set(zoo.classification_models())
    assert set(REFUSED) <= set(zoo.classification_models())


@pytest.mark.slow
def test_googlenet_with_auxiliary_heads_is_refused_and_left_unchanged():
    model = zoo.build("googlenet", aux_logits=True)
    x = torch.randn(1, 3, 64, 64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(sc.SecateursError, match="auxiliary classifiers"):
        sc.prune(model, x, ratio=0.3)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
