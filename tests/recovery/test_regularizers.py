import pytest
import torch
from recovery_data import image_batches, mlp, small_cnn

import secateurs as sc
from secateurs.errors import InvalidArgumentError


def test_bn_l1_value_and_subgradient_hook():
    m = small_cnn()
    with torch.no_grad():
        m[1].weight.uniform_(-1, 1)
    reg = sc.regularizers.bn_l1(m, 0.1, modules=["1"])
    assert reg().item() == pytest.approx(0.1 * m[1].weight.abs().sum().item())
    opt = torch.optim.SGD(m.parameters(), lr=1.0)
    handle = reg.attach(opt)
    before = m[1].weight.detach().clone()
    opt.step()  # no loss gradient: the hook alone moves the scales by lr * lam * sign
    torch.testing.assert_close(m[1].weight.detach(), before - 0.1 * before.sign())
    handle.remove()
    with pytest.raises(InvalidArgumentError, match="no BatchNorm layer named"):
        sc.regularizers.bn_l1(m, 0.1, modules=["2"])
    with pytest.raises(InvalidArgumentError, match="no BatchNorm"):
        sc.regularizers.bn_l1(mlp(), 0.1)


def test_slimming_drives_targeted_bn_scales_to_zero():
    torch.manual_seed(0)
    m = small_cnn()
    reg = sc.regularizers.bn_l1(m, 0.5, modules=["1"])
    sc.recover(m, image_batches(), regularizer=reg, epochs=3, lr=0.05)
    targeted, other = m[1].weight.abs().mean().item(), m[4].weight.abs().mean().item()
    assert targeted < 0.25 and other > 0.5  # from 1.0 at initialization
    # the proximal form sets them exactly to zero
    opt = torch.optim.SGD(m.parameters(), lr=0.05)
    reg.attach(opt, proximal=True)
    sc.recover(m, image_batches(n=4), optimizer=opt, epochs=3)
    assert (m[1].weight == 0).float().mean().item() >= 0.75


def test_group_lasso_value_is_sum_of_unit_norms():
    torch.manual_seed(0)
    m = mlp(width=5)
    analysis = sc.analyze(m, torch.randn(2, 6))
    reg = sc.regularizers.group_lasso(m, analysis, lam=0.3)
    w1, b1, w2 = m[0].weight, m[0].bias, m[2].weight
    manual = (w1.pow(2).sum(1) + b1.pow(2) + w2.pow(2).sum(0)).sqrt().sum()
    assert reg().item() == pytest.approx(0.3 * manual.item(), rel=1e-5)
    assert len(reg.unit_norms()) == 1 and reg.unit_norms()[0].shape == (5,)


def test_group_lasso_zeroes_whole_units_that_then_prune_exactly():
    torch.manual_seed(0)
    m = small_cnn()
    x = torch.randn(2, 1, 8, 8)
    reg = sc.regularizers.group_lasso(m, sc.analyze(m, x), lam=0.8)
    with torch.no_grad():  # make half the units of each group weak, so the penalty, not chance, picks them
        for _, slices in reg.groups:
            for s in slices:
                weak = s.index[4:].flatten()
                s.param.index_copy_(s.dim, weak, s.param.index_select(s.dim, weak) * 0.1)
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
    reg.attach(opt, proximal=True)
    sc.recover(m, image_batches(), optimizer=opt, epochs=3)
    zero_fractions = []
    for (group, slices), norms in zip(reg.groups, reg.unit_norms(), strict=True):
        dead = (norms == 0).nonzero().flatten()
        for s in slices:  # every member slice of a dead unit is exactly zero, together
            assert torch.count_nonzero(s.param.detach().index_select(s.dim, s.index[dead].flatten())) == 0
        zero_fractions.append(len(dead) / group.n_units)
    assert zero_fractions == [0.5, 0.5]
    m.eval()
    before = m(x)
    report = sc.prune(m, x, ratio=0.5)
    assert report.plan.removed_units() > 0
    torch.testing.assert_close(m(x), before, rtol=0, atol=1e-6)


def test_group_lasso_refuses_stale_analysis():
    m = small_cnn()
    x = torch.randn(1, 1, 8, 8)
    analysis = sc.analyze(m, x)
    sc.prune(m, x, ratio=0.5, check=False)
    with pytest.raises(InvalidArgumentError, match="analyze again"):
        sc.regularizers.group_lasso(m, analysis, 0.1)
