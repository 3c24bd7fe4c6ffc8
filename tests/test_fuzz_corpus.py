"""A seeded corpus of 500 random architectures (``secateurs.testing.random_arch``), each pruned with ``sc.prune``
and either refused with a ``SecateursError`` or checked by an oracle independent of secateurs' verification
(``independent_oracle.py``): 0 silent mismatches. The full corpus is slow-marked; 20 cases spread over it run by
default. ``-m slow -s`` prints the outcome counts.
"""

from __future__ import annotations

import collections

import pytest
import torch
from independent_oracle import check_prune

from secateurs.testing.random_arch import random_model
from secateurs.testing.random_blocks import EXTRA_OUTPUTS, REDUCE_MAPS

CORPUS = 500
SAMPLE = range(0, CORPUS, CORPUS // 20)


def draw(seed: int) -> tuple[float, str]:
    """The ratio and criterion a corpus seed is pruned with (every combination recurs)."""
    return (0.25, 0.5, 0.75)[seed % 3], ("l1", "l2", "random")[(seed // 3) % 3]


def run_case(seed: int) -> str:
    ratio, importance = draw(seed)
    return check_prune(random_model(seed), ratio, importance, seed)


@pytest.mark.parametrize("seed", SAMPLE)
def test_corpus_sample(seed: int):
    run_case(seed)


@pytest.mark.slow
def test_corpus():
    outcomes: collections.Counter[str] = collections.Counter()
    mismatches = []
    for seed in range(CORPUS):
        try:
            outcomes[run_case(seed)] += 1
        except AssertionError as exc:
            mismatches.append(str(exc))
    print(f"\nfuzz corpus of {CORPUS}: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
    assert not mismatches, f"{len(mismatches)} silent mismatches, first: {mismatches[0]}"
    assert outcomes["exact"] > 100 and outcomes["structural"] > 50
    assert sum(v for k, v in outcomes.items() if k.startswith("refused:")) > 10


def test_corpus_covers_the_hard_cases():
    """The generator must produce each hard case often enough for the corpus to test it."""
    seen: collections.Counter[str] = collections.Counter()
    for seed in range(CORPUS):
        model = random_model(seed).model
        extra = getattr(model, "extra", None)
        if extra:
            seen[f"extra:{extra}"] += 1
        for m in model.modules():
            kind = type(m).__name__
            if kind == "ShuffleBlock" and m.g > 1:
                seen["shuffle" if m.conv.groups == 1 else "shuffle+grouped conv"] += 1
            elif kind == "ChannelReduceBlock":
                seen["reduce:" + ("keeps zeros" if m.map in ("relu", "tanh", "square") else "not zero")] += 1
            elif kind == "Attention" and m.const_heads:
                seen["heads from an attribute"] += 1
            elif kind in ("UnevenSplitBlock", "TiedConvBlock", "GroupGateMLP"):
                seen[kind] += 1
    wanted = {"shuffle", "shuffle+grouped conv", "reduce:keeps zeros", "reduce:not zero", "heads from an attribute",
              "UnevenSplitBlock", "TiedConvBlock", "GroupGateMLP", *(f"extra:{k}" for k in EXTRA_OUTPUTS)}
    rare = {k: seen[k] for k in wanted if seen[k] < 10}
    assert not rare, f"hard cases too rare in the corpus: {rare}"
    assert set(REDUCE_MAPS) >= {"sigmoid", "exp", "cos", "plus_one"}


def test_tied_weights_stay_tied():
    case = next(c for c in map(random_model, range(CORPUS))
                if any(type(m).__name__ == "TiedConvBlock" for m in c.model.modules()))
    block = next(m for m in case.model.modules() if type(m).__name__ == "TiedConvBlock")
    assert block.first.weight is block.second.weight
    torch.testing.assert_close(case.model(case.inputs), case.model(case.inputs))
