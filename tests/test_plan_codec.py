"""Compact plan JSON (format 2): index sets as runs or bitmaps, stored once; plans of format 1 still load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import secateurs as sc
from secateurs.errors import FileFormatError
from secateurs.plan_codec import FORMAT, decode_set, encode_set
from secateurs.plans import Plan
from secateurs.testing.hf import tiny

FIXTURE = Path(__file__).parent / "fixtures" / "plan_format1_tiny_llama.json"


@pytest.mark.parametrize("indices,size", [([], 5), ([0, 1, 2], 3), ([1, 3, 4, 5, 9], 10), (list(range(0, 4096, 2)), 4096)])
def test_sets_round_trip(indices, size):
    entry = encode_set(indices, size)
    assert decode_set(json.loads(json.dumps(entry)), "t") == indices


def test_runs_for_contiguous_heads_bitmap_for_scattered_neurons():
    heads = [i for h in (0, 1, 3, 6) for i in range(h * 128, (h + 1) * 128)]
    assert encode_set(heads, 1024) == {"size": 1024, "runs": [0, 256, 384, 512, 768, 896]}
    rng = np.random.default_rng(0)
    neurons = np.sort(rng.choice(14336, 10035, replace=False)).tolist()
    entry = encode_set(neurons, 14336)
    assert "bits" in entry and len(entry["bits"]) == 2392  # 14336 bits, base64
    assert decode_set(entry, "t") == neurons


@pytest.mark.parametrize("entry", [
    {"size": 4, "runs": [0, 2, 1, 3]},  # overlapping
    {"size": 4, "runs": [2, 1]},  # empty run
    {"size": 4, "runs": [0, 5]},  # past the size
    {"size": 4, "runs": [0]},  # odd length
    {"size": 4, "bits": "not base64!"},
    {"size": 4, "bits": "/w=="},  # bits beyond the size
    {"runs": [0, 1]},
])
def test_malformed_sets_refused(entry):
    with pytest.raises(FileFormatError, match="index set"):
        decode_set(entry, "t")


def test_plan_round_trip_is_compact_and_equal():
    t = tiny("llama")
    plan = sc.plan(t.model, t.inputs, ratio={"heads": 0.5, "ffn": 0.3})
    d = plan.to_dict()
    assert d["format"] == FORMAT == 2
    assert all(isinstance(ref, int) for dims in d["keep"].values() for ref in dims.values())
    # q_proj and o_proj keep the same query channels: one set, stored once
    attn = "model.layers.0.self_attn."
    assert d["keep"][attn + "q_proj.weight"]["0"] == d["keep"][attn + "o_proj.weight"]["1"]
    back = Plan.from_json(plan.to_json())
    assert back.keep == plan.keep
    assert [g.removed for g in back.groups] == [g.removed for g in plan.groups]
    assert back.to_dict() == d


def test_format_1_plan_still_loads_and_applies():
    old = json.loads(FIXTURE.read_text())
    assert old["format"] == 1 and isinstance(next(iter(next(iter(old["keep"].values())).values())), list)
    plan = Plan.from_json(FIXTURE.read_text())
    t = tiny("llama")
    again = sc.plan(t.model, t.inputs, plan.config)  # the same options on the same weights: the same plan
    assert plan.keep == again.keep
    assert [g.removed for g in plan.groups] == [g.removed for g in again.groups]
    sc.apply(t.model, plan)
    assert t.model.model.layers[0].self_attn.q_proj.weight.shape[0] == len(plan.keep["model.layers.0.self_attn.q_proj.weight"][0])
    assert Plan.from_json(plan.to_json()).keep == plan.keep  # written back as format 2


def test_unknown_format_refused():
    d = json.loads(FIXTURE.read_text())
    d["format"] = 99
    with pytest.raises(FileFormatError, match="format 1 or 2"):
        Plan.from_dict(d)


def test_bad_set_reference_refused():
    t = tiny("llama")
    d = sc.plan(t.model, t.inputs, ratio=0.25).to_dict()
    fqn = next(iter(d["keep"]))
    d["keep"][fqn][next(iter(d["keep"][fqn]))] = len(d["index_sets"])
    with pytest.raises(FileFormatError, match="index set"):
        Plan.from_dict(d)
