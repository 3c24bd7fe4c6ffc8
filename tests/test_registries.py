"""Generated from the registries: every registry has a contract, and every entry of it is checked.

A registry is found through ``Registry.instances()`` after importing every module of the package (and the
integrations), so a new registry without a contract here fails ``test_every_registry_has_a_contract``, and a
new entry of a registry is checked the day it is registered. Registries whose entries are checked by their
own generated test file are delegated to it (the file must iterate that registry).
"""

from __future__ import annotations

import importlib
import pathlib
import pkgutil
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import secateurs
from secateurs.registry import Registry, key_name
from secateurs.testing.registry_cases import DEPTH_CASES, MODULE_CASES

TESTS = pathlib.Path(__file__).parent


def _import_everything() -> None:
    for info in pkgutil.walk_packages(secateurs.__path__, "secateurs."):
        if ".testing.assets" not in info.name and not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    for reg in Registry.instances():
        reg.entries()  # built-in modules load


_import_everything()
REGISTRIES = {r.what: r for r in Registry.instances()}

#: registry -> (test file that parametrizes over it, the expression it iterates)
DELEGATED = {
    "coupling rule": ("graph/test_rule_registry.py", "RULES.entries()"),
    "literal finder": ("graph/test_literals.py", "FINDERS.entries()"),
    "surgery handler": ("surgery/test_handler_registry.py", "REGISTRY.entries()"),
    "importance criterion": ("scoring/test_criteria.py", "CRITERIA.names()"),
    "Hugging Face family": ("integrations/hf/test_families.py", "FAMILIES.entries()"),
    "plan check": ("planning/test_checks.py", "PLAN_CHECKS.entries()"),
}


def _cases(what: str) -> list[Any]:
    return [pytest.param(k, id=key_name(k)) for k in REGISTRIES[what].entries()]


def test_every_registry_has_a_contract():
    checked = set(DELEGATED) | {name.removeprefix("test_").replace("_", " ") for name in globals()
                                if name.startswith("test_entry_")} | set(CONTRACT_NAMES)
    missing = sorted(set(REGISTRIES) - checked)
    assert not missing, f"registries without a contract test in tests/test_registries.py: {missing}"


@pytest.mark.parametrize("what", sorted(DELEGATED))
def test_delegated_registries_are_iterated_by_their_test_file(what):
    path, expression = DELEGATED[what]
    assert expression in (TESTS / path).read_text(), f"{path} must parametrize over {expression}"
    assert REGISTRIES[what].entries(), f"registry {what!r} is empty"


# -- contracts of the other registries ----------------------------------------------------------------------------
CONTRACT_NAMES = {"data-aware default", "shear layout", "slice-refreshing module", "compute op", "calibration layout", "feature map", "depth adapter", "compensation method", "2:4 sparsity method",
                  "layer_importance", "model spec scheme", "count constraint provider"}


def _case(key: Any) -> Any:
    case = MODULE_CASES.get(key) or MODULE_CASES.get(key_name(key) if isinstance(key, type) else key)
    assert case is not None, f"add a case for {key_name(key)} to secateurs.testing.registry_cases.MODULE_CASES"
    return case


@pytest.mark.parametrize("key", _cases("calibration layout"))
def test_layout_dims_index_the_channels_the_module_reads_and_writes(key):
    layout = REGISTRIES["calibration layout"].entries()[key]
    case = _case(key)
    module, x = case.make(), case.inputs()
    y = module(x)
    weight = module.weight
    if layout.weight_out is not None:
        assert y.shape[layout.act_dim] == weight.shape[layout.weight_out]
    if layout.weight_in is not None:
        assert x.shape[layout.act_dim] == weight.shape[layout.weight_in] * getattr(module, "groups", 1)


@pytest.mark.parametrize("key", _cases("feature map"))
def test_feature_rows_times_the_weight_matrix_give_the_output(key):
    fn = REGISTRIES["feature map"].entries()[key]
    case = _case(key)
    module, x = case.make(), case.inputs()
    fmap = fn(module)
    assert fmap is not None and fmap.rows is not None
    rows = fmap.rows(x)
    assert rows.shape[1] == fmap.size
    out = rows @ fmap.matrix(module.weight).t()
    if getattr(module, "bias", None) is not None:
        out = out + module.bias.detach().to(torch.float64)
    y = module(x).detach().to(torch.float64)
    y = y.movedim(1, -1) if isinstance(module, nn.Conv1d | nn.Conv2d) else y
    torch.testing.assert_close(out, y.reshape(-1, y.shape[-1]), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("key", _cases("depth adapter"))
def test_depth_adapter_finds_the_block_list(key):
    adapter = REGISTRIES["depth adapter"].entries()[key]
    make = DEPTH_CASES.get(key_name(key) if isinstance(key, type) else key)
    assert make is not None, f"add a case for {key_name(key)} to secateurs.testing.registry_cases.DEPTH_CASES"
    model, path = make()
    assert adapter.find(model) == path
    blocks = model.get_submodule(path)
    assert isinstance(blocks, nn.ModuleList) and len(blocks) >= 2


@pytest.mark.parametrize("key", _cases("compensation method"))
def test_compensation_method_lowers_the_output_error(key):
    from secateurs.testing.toys import MLP

    torch.manual_seed(0)
    model = MLP().eval()
    x = torch.randn(8, model.fc1.in_features)
    batches = [torch.randn(16, model.fc1.in_features) for _ in range(4)]
    report = secateurs.prune(model, x, ratio=0.5, importance="l2", calibration=batches, compensate=key)
    c = report.compensation
    assert c is not None and c.error_after <= c.error_before + 1e-9


@pytest.mark.parametrize("key", _cases("2:4 sparsity method"))
def test_sparsity_method_masks_every_linear_two_of_four(key):
    from secateurs.sparsity import is_n_of_m, sparsify_2to4
    from secateurs.testing.toys import MLP

    torch.manual_seed(0)
    model = MLP().eval()
    method = REGISTRIES["2:4 sparsity method"].entries()[key]
    batches = [torch.randn(4, model.fc1.in_features)] if method.needs_data else None
    sparsify_2to4(model, key, calibration=batches)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear) and m.in_features % 4 == 0]
    assert linears and all(is_n_of_m(m.weight != 0, 2, 4) for m in linears)


@pytest.mark.parametrize("key", _cases("layer_importance"))
def test_layer_criterion_drops_valid_blocks(key):
    from secateurs.depth.criteria import score_layers
    from secateurs.testing.hf import tiny, token_batches

    model = tiny("llama", layers=4).model
    blocks = list(model.model.layers)
    result = score_layers(model, blocks, token_batches(2), 1, key)
    assert len(result.drop) == 1 and 0 <= result.drop[0] < len(blocks)
    assert np.isfinite(result.scores).all()


@pytest.mark.parametrize("key", _cases("model spec scheme"))
def test_model_spec_scheme_resolves_an_example(key, tmp_path):
    from secateurs.io.specs import resolve

    examples = {"torchvision": "torchvision:resnet18", "timm": "timm:resnet18", "hf": None, "file": None}
    assert key in examples, f"add an example spec for scheme {key!r}"
    spec = examples[key]
    if key == "hf":
        from secateurs.testing.hf import tiny

        tiny("llama").model.save_pretrained(tmp_path)
        spec = f"hf:{tmp_path}"
    if key == "file":
        from secateurs.testing.models import TinyResNet

        model = TinyResNet().eval()
        x = torch.randn(1, 3, 32, 32)
        report = secateurs.prune(model, x, ratio=0.25)
        secateurs.save(model, report.plan, tmp_path / "saved", model_spec="secateurs.testing.models:TinyResNet")
        spec = f"file:{tmp_path / 'saved'}"
    source = resolve(spec, trust_code=True)
    assert source.spec.startswith(f"{key}:") and isinstance(source.build(), nn.Module)


@pytest.mark.parametrize("key", _cases("compute op"))
def test_op_table_entry_counts_macs_as_torch_does_and_names_the_layer_weight(key):
    """MACs from the table equal half of torch's FlopCounterMode FLOPs for the op (norms: one per output element);
    a layer entry's weight argument is a parameter and its input an activation."""
    from torch.utils.flop_counter import FlopCounterMode

    from secateurs.graph.capture import capture
    from secateurs.graph.counting import node_macs
    from secateurs.graph.ops import OUT
    from secateurs.testing.fixtures import all_fixtures

    info = REGISTRIES["compute op"].entries()[key]
    fixture = all_fixtures().get(key)
    assert fixture is not None, f"no op fixture for {key} in secateurs.testing.fixtures"
    model, x = fixture.make().eval(), fixture.inputs()
    args = x if isinstance(x, tuple) else (x,)
    cap = capture(model, args)
    nodes = [n for n in cap.nodes if n.kind == "call" and n.target.rsplit(".", 1)[0] == key]
    assert nodes, f"the fixture of {key} does not run it"
    if info.terms is not None or info.count is not None:
        ours = sum(node_macs(cap, n) for n in nodes)
        is_norm = info.terms is not None and info.terms(nodes[0]) == [[(OUT, slice(None))]]
        if is_norm:
            value = nodes[0].value[0] if isinstance(nodes[0].value, (list, tuple)) else nodes[0].value
            assert ours == sum(int(n.value[0].numel() if isinstance(n.value, (list, tuple)) else n.value.numel())
                               for n in nodes) and value is not None
        else:
            others = sum(node_macs(cap, n) for n in cap.nodes if n.kind == "call" and n not in nodes
                         and (i := REGISTRIES["compute op"].find(n.target.rsplit(".", 1)[0])) is not None
                         and i.terms is not None and i.terms(n) != [[(OUT, slice(None))]])
            with FlopCounterMode(display=False) as counter, torch.no_grad():
                model(*args)
            flops = counter.get_total_flops()
            if key == "aten.scaled_dot_product_attention" and flops == 2 * others:
                flops += 2 * sum(_sdpa_macs(cap, n) for n in nodes)  # the CPU kernel is not counted by torch
            assert ours + others == flops // 2, (ours, others, flops)
    if info.layer is not None:
        node = nodes[0]
        weight = node.args[info.layer.weight_arg]
        assert getattr(weight, "name", None) in cap.state_inputs, f"{key}: argument {info.layer.weight_arg} is no weight"
        act = node.args[info.layer.input_arg]
        assert getattr(act, "name", None) not in cap.state_inputs, f"{key}: argument {info.layer.input_arg} is a weight"


def _sdpa_macs(cap: Any, n: Any) -> int:
    """q @ k^T and attn @ v: batch·heads·L·S·(E + Ev), from the captured shapes."""
    q, k, v = (cap.by_name[a.name].value.shape for a in n.args[:3])
    return int(np.prod(q[:-1])) * k[-2] * (q[-1] + v[-1])


@pytest.mark.parametrize("key", _cases("slice-refreshing module"))
def test_a_slice_refreshing_module_has_a_handler_that_refreshes_its_attributes(key):
    """Unequal slices are linked only in modules whose forward recomputes the bounds from attributes; a surgery
    handler must refresh those attributes, so the class has one."""
    handlers = REGISTRIES["surgery handler"].entries()
    assert any(isinstance(k, type) and k.__name__ == key for k in handlers), f"no surgery handler for {key}"


@pytest.mark.parametrize("key", _cases("data-aware default"))
def test_data_aware_default_names_registered_methods_and_its_evidence(key):
    from secateurs.compensation.methods import METHODS
    from secateurs.scoring.registry import CRITERIA

    entry = REGISTRIES["data-aware default"].entries()[key]
    crit = REGISTRIES["importance criterion"].find(entry.importance)
    assert crit is not None and getattr(CRITERIA.get(entry.importance)(), "needs_data", False)
    assert entry.compensate in (None, "none") or entry.compensate in METHODS
    assert "bench/" in entry.evidence or "docs/" in entry.evidence  # where the choice was measured


@pytest.mark.parametrize("key", _cases("shear layout"))
def test_shear_layout_describes_its_model(key):
    from secateurs.testing.hf import tiny

    finder = REGISTRIES["shear layout"].entries()[key]
    cases = {"transformers.modeling_utils.PreTrainedModel": lambda: tiny("llama").model}
    assert key in cases, f"add a model for shear layout {key!r}"
    model = cases[key]()
    layout = finder(model)
    blocks = model.get_submodule(layout.blocks_path)
    assert layout.n_layers == len(blocks) == len(layout.attn_out) == len(layout.mlp_out)
    assert layout.hidden == model.config.hidden_size and layout.heads % layout.kv_heads == 0


@pytest.mark.parametrize("key", _cases("count constraint provider"))
def test_count_constraint_provider_accepts_the_unpruned_counts_and_rejects_some(key):
    transformers = pytest.importorskip("transformers")
    from secateurs.graph.analysis import analyze

    provider = REGISTRIES["count constraint provider"].entries()[key]
    cases = {"transformers.modeling_utils.PreTrainedModel": lambda: transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=64, hidden_size=80, intermediate_size=64, num_hidden_layers=1, num_attention_heads=8,
        num_key_value_heads=4, head_dim=10, max_position_embeddings=32)).eval()}
    assert key in cases, f"add a model for count constraint provider {key!r}"
    model = cases[key]()
    x = {"input_ids": torch.randint(1, 64, (1, 6)), "use_cache": False}
    groups = analyze(model, x).groups
    by_id = {g.id: g for g in groups}
    found = provider(model, groups, {g.id: g.n_units for g in groups})
    assert found, "the provider constrains nothing on a model its config limits (hidden 80 is not divisible by 3 or 6 heads)"
    for c in found:
        full = tuple(by_id[i].n_units for i in c.groups)
        assert full in c.allowed, f"{c.where}: the unpruned counts {full} must be allowed"
        every = {tuple(k) for k in __import__("itertools").product(*[range(1, by_id[i].n_units + 1) for i in c.groups])}
        assert c.allowed < every, f"{c.where}: a constraint that allows every count constrains nothing"
        assert c.why and c.where
