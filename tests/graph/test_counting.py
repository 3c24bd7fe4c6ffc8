import torch
from torch import nn

import secateurs as sc


def test_macs_and_params_of_known_layers():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 10)).eval()
    macs, params = sc.count(model, torch.randn(2, 3, 4, 4))
    conv = 2 * 8 * 4 * 4 * (3 * 3 * 3)
    linear = 2 * 10 * 128
    assert macs == conv + linear
    assert params == sum(p.numel() for p in model.parameters())


def test_grouped_conv_and_attention_macs():
    conv = nn.Conv2d(8, 8, 3, padding=1, groups=4).eval()
    macs, _ = sc.count(conv, torch.randn(1, 8, 5, 5))
    assert macs == 8 * 5 * 5 * (2 * 3 * 3)

    class Attn(nn.Module):
        def forward(self, q, k, v):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v)

    q = torch.randn(1, 2, 6, 4)
    k = torch.randn(1, 2, 7, 4)
    macs, params = sc.count(Attn(), (q, k, torch.randn(1, 2, 7, 5)))
    assert macs == 2 * 6 * 7 * 4 + 2 * 6 * 7 * 5 and params == 0
