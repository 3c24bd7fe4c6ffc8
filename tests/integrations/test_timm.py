import pytest
import torch

import secateurs as sc

timm = pytest.importorskip("timm")


def test_timm_vit_heads_and_mlp_prune_exactly():
    model = timm.create_model("vit_tiny_patch16_224", num_classes=10, img_size=32, patch_size=8).eval()
    x = torch.randn(1, 3, 32, 32)
    report = sc.prune(model, x, ratio={"heads": 0.34})
    assert report.verification.ok and report.verification.mode == "exact"
    attn = model.blocks[0].attn
    assert attn.num_heads == 2 and attn.qkv.out_features == 3 * 2 * attn.head_dim
    assert attn.proj.in_features == attn.num_heads * attn.head_dim
    assert model(x).shape == (1, 10)


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv3_small_100", "convnext_atto"])
def test_timm_cnns_prune_and_verify(name):
    model = timm.create_model(name, num_classes=10).eval()
    x = torch.randn(1, 3, 64, 64)
    report = sc.prune(model, x, ratio=0.3)
    assert report.verification.ok
    assert report.plan.removed_units() > 0 and report.params_after < report.params_before
