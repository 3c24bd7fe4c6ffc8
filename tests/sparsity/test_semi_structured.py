import copy

import pytest
import torch
from torch import nn

import secateurs as sc
from secateurs.errors import ApplyError, FileFormatError, InvalidArgumentError
from secateurs.sparsity import apply_masks_, is_n_of_m, n_of_m_mask, plan_2to4, sparsify_2to4
from secateurs.testing.toys import MLP, DeepMLP


def _groups(w):
    return w.reshape(w.shape[0], -1, 4)


def test_exactly_two_of_every_four_are_zero():
    torch.manual_seed(0)
    model = DeepMLP(d_in=8, hidden=16, d_out=4)
    result = sparsify_2to4(model)
    assert [layer.name for layer in result.layers] == ["fc1", "fc2", "fc3"]
    for layer in (model.fc1, model.fc2, model.fc3):
        zeros = (_groups(layer.weight) == 0).sum(-1)
        assert (zeros == 2).all()
    assert all(layer.sparsity == 0.5 for layer in result.layers) and result.sparsity == 0.5
    assert set(result.masks) == {"fc1.weight", "fc2.weight", "fc3.weight"}


def test_magnitude_keeps_the_two_largest_of_each_group():
    layer = nn.Linear(8, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.1, -4.0, 3.0, 0.2, 5.0, 6.0, -7.0, 8.0],
                                         [-9.0, 1.0, 1.0, 2.0, 0.0, 0.0, 0.0, 0.5]]))
    result = sparsify_2to4(layer)
    assert (layer.weight != 0).int().tolist() == [[0, 1, 1, 0, 0, 0, 1, 1], [1, 0, 0, 1, 0, 0, 0, 1]]
    # the mask of the tied group (0, 0, 0, 0.5) keeps 0.5 and the first of the equal zeros
    assert result.masks["weight"][1].int().tolist() == [1, 0, 0, 1, 1, 0, 0, 1]
    assert torch.equal(n_of_m_mask(torch.tensor([[1.0, 1.0, 1.0, 1.0]])), torch.tensor([[True, True, False, False]]))


def test_wanda_respects_activation_norms():
    model = MLP(d_in=4, hidden=4, d_out=4)
    with torch.no_grad():
        model.fc1.weight.copy_(torch.tensor([[1.0, 2.0, 3.0, 4.0]]).repeat(4, 1))
    # input features 0 and 1 are large, 2 and 3 tiny: |W|*||X|| prefers columns 0 and 1
    batches = [torch.randn(16, 4) * torch.tensor([10.0, 10.0, 0.01, 0.01]) for _ in range(3)]
    by_magnitude = plan_2to4(model, "magnitude").masks["fc1.weight"]
    by_wanda = plan_2to4(model, "wanda", calibration=batches).masks["fc1.weight"]
    assert by_magnitude[0].tolist() == [False, False, True, True]
    assert by_wanda[0].tolist() == [True, True, False, False]
    with pytest.raises(InvalidArgumentError, match="needs calibration"):
        plan_2to4(model, "wanda")


def test_layers_not_multiple_of_four_are_skipped_with_a_note():
    model = MLP(d_in=6, hidden=8, d_out=3)  # fc1 has in_features 6
    before = model.fc1.weight.detach().clone()
    result = sparsify_2to4(model)
    assert "fc1" in result.skipped and "not a multiple of 4" in result.skipped["fc1"]
    assert torch.equal(model.fc1.weight, before)
    assert [layer.name for layer in result.layers] == ["fc2"]
    assert any("round_to=4" in n for n in result.notes)
    assert any("no speed-up is expected on CPU" in n for n in result.notes)


def test_ignore_and_tied_weights_are_left_dense():
    model = DeepMLP(d_in=8, hidden=16, d_out=4)
    result = sparsify_2to4(model, ignore=["fc3"])
    assert result.skipped == {"fc3": "ignored"}
    tied = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8))
    tied[1].weight = tied[0].weight
    result = sparsify_2to4(tied)
    assert set(result.skipped) == {"0", "1"} and "tied" in result.skipped["0"]
    with pytest.warns(UserWarning, match="matches no module"):
        sparsify_2to4(DeepMLP(), ignore=["nothing_here"])


def test_apply_is_all_or_nothing():
    model = DeepMLP(d_in=8, hidden=16, d_out=4)
    before = copy.deepcopy(model.state_dict())
    masks = plan_2to4(model).masks
    masks["fc3.weight"] = torch.ones_like(masks["fc3.weight"])  # not 2:4
    with pytest.raises(ApplyError, match="fc3.weight"):
        apply_masks_(model, masks)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_unknown_method():
    with pytest.raises(InvalidArgumentError, match="'magnitude', 'wanda'"):
        sparsify_2to4(MLP(), "best")


def test_after_structured_pruning_and_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = DeepMLP(d_in=8, hidden=16, d_out=4).eval()
    fresh = copy.deepcopy(model)
    x = torch.randn(2, 8)
    report = sc.prune(model, x, ratio=0.5, round_to=4)
    result = sc.sparsify_2to4(model, "wanda", calibration=[torch.randn(4, 8) for _ in range(2)])
    assert all(is_n_of_m(m) for m in result.masks.values()) and len(result.masks) == 3
    sc.save(model, report.plan, tmp_path / "out", sparsity=result)
    manifest = sc.io.read_manifest(tmp_path / "out")
    assert manifest["sparsity"]["method"] == "wanda" and "sparsity.safetensors" in manifest["files"]
    loaded = sc.load(tmp_path / "out", model=fresh)
    masks = sc.io.read_masks(tmp_path / "out")
    assert set(masks) == set(result.masks)
    assert all(torch.equal(masks[k], result.masks[k]) for k in masks)
    for name, mask in masks.items():
        w = loaded.get_parameter(name)
        assert (w[~mask] == 0).all() and torch.equal(w, model.get_parameter(name))
    assert torch.allclose(loaded(x), model(x))


def test_edited_or_pickled_mask_file_is_refused(tmp_path):
    import shutil

    from safetensors.torch import save_file

    model = DeepMLP().eval()
    report = sc.prune(model, torch.randn(2, 8), ratio=0.0)
    sc.save(model, report.plan, tmp_path / "a", sparsity=sc.sparsify_2to4(model))
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    masks = sc.io.read_masks(tmp_path / "a")
    masks["fc1.weight"] = torch.ones_like(masks["fc1.weight"])
    save_file(masks, str(tmp_path / "b" / "sparsity.safetensors"))
    with pytest.raises(FileFormatError, match="checksum"):
        sc.io.read_masks(tmp_path / "b")
    torch.save({"x": 1}, tmp_path / "b" / "sparsity.safetensors")
    with pytest.raises(FileFormatError, match="pickle"):
        sc.load(tmp_path / "b", model=DeepMLP())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_to_sparse_semi_structured_on_cuda():
    from secateurs.sparsity import to_semi_structured_

    if torch.cuda.get_device_capability()[0] < 8:
        pytest.skip("needs compute capability 8.0+ (sparse tensor cores)")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10)).half().cuda().eval()
    sparsify_2to4(model)
    x = torch.randn(64, 128, dtype=torch.half, device="cuda")
    with torch.inference_mode():
        dense = model(x)
    status = to_semi_structured_(model)
    assert status["0"] == "converted"
    assert "not a multiple" in status["2"]  # 10 rows: below the tile
    with torch.inference_mode():
        sparse = model(x)
    assert torch.allclose(dense, sparse, rtol=1e-2, atol=1e-2)


def test_conversion_reasons_on_cpu():
    from secateurs.sparsity import to_semi_structured_

    model = nn.Sequential(nn.Linear(128, 128))
    sparsify_2to4(model)
    assert to_semi_structured_(model) == {"0": "weight is on cpu; semi-structured sparse kernels need CUDA"}


def test_hf_conv1d_is_masked_along_its_input_dim_and_round_trips(tmp_path):
    pytest.importorskip("transformers")
    from transformers.pytorch_utils import Conv1D

    from secateurs.testing.hf import tiny

    t = tiny("gpt2")
    model = t.model.eval()
    fresh = copy.deepcopy(model)
    report = sc.prune(model, t.inputs, ratio=0.0)
    result = sparsify_2to4(model, "wanda", calibration=[t.inputs])
    conv1d = [n for n, m in model.named_modules() if isinstance(m, Conv1D)]
    assert conv1d and {layer.name for layer in result.layers} == set(conv1d)
    assert "lm_head" in result.skipped and "tied" in result.skipped["lm_head"]
    for name in conv1d:
        w = model.get_submodule(name).weight  # (in, out): groups of 4 run down the columns
        assert (w.t().reshape(w.shape[1], -1, 4) == 0).sum(-1).eq(2).all()
        assert all(x.in_dim == 0 for x in result.layers)
    sc.save(model, report.plan, tmp_path / "g", sparsity=result)
    loaded = sc.load(tmp_path / "g", model=fresh)
    masks = sc.io.read_masks(tmp_path / "g")
    assert set(masks) == {f"{n}.weight" for n in conv1d}
    assert all(torch.equal(loaded.get_parameter(k), model.get_parameter(k)) for k in masks)
