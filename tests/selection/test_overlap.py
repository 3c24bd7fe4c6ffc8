import torch
from torch import nn

import secateurs as sc


class Grouped(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(4, 24, 1)
        self.g = nn.Conv2d(24, 24, 3, padding=1, groups=6)
        self.b = nn.Conv2d(24, 8, 1)

    def forward(self, x):
        return self.b(torch.relu(self.g(torch.relu(self.a(x)))))


def test_grouped_conv_keeps_group_count_and_halves_width():
    model = Grouped().eval()
    x = torch.randn(1, 4, 6, 6)
    a = sc.analyze(model, x)
    overlapping = [g for g in a.groups if any(m.fqn == "g.weight" and m.dim == 0 for m in g.members)]
    assert len(overlapping) >= 2  # whole groups and width-per-group both exist
    report = sc.prune(model, x, ratio=0.5)
    assert report.verification.ok
    assert model.g.groups == 6 and model.g.out_channels == 12  # 50% kept, not 25%
    assert model.a.out_channels == 12


class GroupNormed(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 16, 1)
        self.gn = nn.GroupNorm(4, 16)
        self.b = nn.Conv2d(16, 5, 1)

    def forward(self, x):
        return self.b(torch.relu(self.gn(self.a(x))))


def test_groupnorm_prefers_exact_whole_groups():
    model = GroupNormed().eval()
    x = torch.randn(2, 3, 5, 5)
    report = sc.prune(model, x, ratio=0.5)
    assert report.verification.ok and report.verification.mode == "exact"
    assert model.gn.num_groups == 2 and model.gn.num_channels == 8
