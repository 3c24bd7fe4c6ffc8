"""batch_norm with batch statistics (weight standardisation, NFNet/BiT-style convs) averages over every dim but
the channels: pruning those dims changes the statistics, so the groups are checked structurally, not refused."""

import torch
import torch.nn.functional as F
from torch import nn

import secateurs as sc


class _StdConv(nn.Conv2d):
    def forward(self, x):
        w = F.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None, training=True, momentum=0.0,
                         eps=1e-6).reshape_as(self.weight)
        return F.conv2d(x, w, self.bias, self.stride, self.padding)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.fc = _StdConv(3, 8, 3, padding=1), _StdConv(8, 8, 3, padding=1), nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(self.b(F.relu(self.a(x))).mean((2, 3)))


def test_input_channels_of_a_standardised_conv_are_inexact():
    torch.manual_seed(0)
    model, x = _Net().eval(), torch.randn(1, 3, 8, 8)
    analysis = sc.analyze(model, x)
    hidden = [g for g in analysis.groups if any(m.fqn == "b.weight" and m.dim == 1 for m in g.members)]
    assert hidden and not hidden[0].exact
    # the standardised weights are not zero at removed input channels either (zero tracking may say that first)
    assert any("batch statistics" in r for r in hidden[0].inexact_reasons)
    report = sc.prune(model, x, ratio=0.5)
    assert report.verification.ok and report.verification.mode in ("structural", "partial")
    assert model.b.weight.shape[1] == 4


def test_batch_norm_with_running_statistics_stays_exact():
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 2, 1)).eval()
    analysis = sc.analyze(model, torch.randn(1, 3, 4, 4))
    assert all(g.exact for g in analysis.groups)
