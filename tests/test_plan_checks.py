"""Hand-edited plans fail validation, naming the field, instead of applying and crashing at the first forward."""

import copy
import json

import pytest
import torch

import secateurs as sc
from secateurs.errors import FileFormatError
from secateurs.plan_codec import as_lists
from secateurs.plans import Plan
from secateurs.testing.models import ConcatNet, TinyResNet


@pytest.fixture(scope="module")
def plan_dict():
    torch.manual_seed(0)
    plan = sc.plan(TinyResNet(width=8).eval(), torch.randn(1, 3, 16, 16), ratio=0.5)
    return as_lists(json.loads(plan.to_json()))  # format 1 (index lists), still read: the fields the checks see


def _bn_member(d):
    group = next(g for g in d["groups"] if g["removed"] and any(".bn" in m[0] or "stem.1" in m[0] for m in g["members"]))
    return next(m for m in group["members"] if m[0].endswith("running_mean"))


def _edit(d, path, value):
    d = copy.deepcopy(d)
    target = d
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return d


_DELETE = object()


def _hinted(d):
    d = copy.deepcopy(d)
    d["hints"] = {"stem.0": {"groups": 0}}  # a conv whose groups=0 would apply, then fail in forward
    return d


def _no_bn_keep(d):
    d = copy.deepcopy(d)
    fqn, _ = _bn_member(d)
    del d["keep"][fqn]  # the conv still shrinks, the BatchNorm statistics would not
    return d


def _bn_keep_differs(d):
    d = copy.deepcopy(d)
    fqn, dim = _bn_member(d)
    kept = d["keep"][fqn][str(dim)]
    d["keep"][fqn][str(dim)] = kept[:-1]
    return d


CASES = {
    "groups hint 0": (_hinted, r"hints\['stem.0'\]\['groups'\]"),
    "BatchNorm keep entry removed": (_no_bn_keep, "no kept indices for its member"),
    "BatchNorm keeps fewer than its conv": (_bn_keep_differs, "shrink together"),
    "groups not a list": (lambda d: _edit(d, ["groups"], 0), "groups must be a list"),
    "group n_units a string": (lambda d: _edit(d, ["groups", 0, "n_units"], "4"), r"groups\[0\].n_units"),
    "group exact not a bool": (lambda d: _edit(d, ["groups", 0, "exact"], 1), r"groups\[0\].exact"),
    "member not a pair": (lambda d: _edit(d, ["groups", 0, "members"], [["x", 0, 1]]), "members"),
    "removed unit out of range": (lambda d: _edit(d, ["groups", 0, "removed"], [10 ** 6]), "unique, in range"),
    "shape NaN": (lambda d: _edit(d, ["shapes", "fc.weight"], [float("nan"), 3]), r"shapes\['fc.weight'\]"),
    "shape huge float": (lambda d: _edit(d, ["shapes", "fc.weight"], [1e309, 3]), r"shapes\['fc.weight'\]"),
    "shape a bool": (lambda d: _edit(d, ["shapes", "fc.weight"], [True, 3]), r"shapes\['fc.weight'\]"),
    "keep not a mapping": (lambda d: _edit(d, ["keep"], []), "keep must be a mapping"),
    "keep dims a list": (lambda d: _edit(d, ["keep", "fc.weight"], [1]), r"keep\['fc.weight'\]"),
    "fingerprint missing": (lambda d: _edit(d, ["fingerprint"], _DELETE), "fingerprint"),
    "settings a list": (lambda d: _edit(d, ["settings"], []), "settings"),
    "dropped layers not ints": (lambda d: _edit(d, ["dropped_layers"], {"layer1": ["0"]}), "dropped_layers"),
    "literal value a string": (lambda d: _edit(d, ["literals"], {"view": {"op": "aten.view", "set": {"args.1": "x"}}}),
                               "literals"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hand_edited_plans_are_refused_with_the_field(plan_dict, name):
    edit, match = CASES[name]
    text = json.dumps(edit(plan_dict))
    with pytest.raises(FileFormatError, match=match):
        Plan.from_json(text)


def test_deeply_nested_json_is_a_typed_error():
    with pytest.raises(FileFormatError, match="not valid JSON"):
        Plan.from_json("[" * 100_000 + "]" * 100_000)


@pytest.mark.parametrize("model,x", [(TinyResNet(width=8), torch.randn(1, 3, 16, 16)),
                                     (ConcatNet(), torch.randn(1, 3, 16, 16))])
def test_plans_made_by_secateurs_pass(model, x):
    for ratio in (0.3, 0.6):
        plan = sc.plan(model.eval(), x, ratio=ratio)
        assert Plan.from_json(plan.to_json()).keep == plan.keep
