"""Every timm architecture family (an entry module of timm's registry) prunes at ratio 0.3 with defaults and
verifies, or is refused with a known reason.

Each family is represented by its smallest registered model (``secateurs.testing.timm_zoo.smallest``), built with
random weights at the smallest input it runs at. The default run checks ``timm_zoo.FAST``; ``-m slow`` every
family. ``bench/zoo_timm.py`` writes the same run as the timm table of docs/zoo.md.
"""

import pytest
import torch

pytest.importorskip("timm")

from zoo_checks import prune_and_check  # noqa: E402

import secateurs as sc  # noqa: E402
from secateurs.testing import timm_zoo  # noqa: E402

# Families secateurs refuses, with a substring of the reason its SecateursError must give.
REFUSED: dict[str, str] = {}
# Families not run: the smallest model is too big for a CPU test run (reason recorded in docs/zoo.md).
SKIPPED: dict[str, str] = {}


def _check(family: str, name: str) -> None:
    model, x = timm_zoo.build(name)
    report = prune_and_check(model, x, REFUSED.get(family))
    if report is None:
        return
    fresh, _ = timm_zoo.build(name)  # replayed from JSON on a fresh copy: attribute rewrites included
    sc.apply(fresh, sc.Plan.from_json(report.plan.to_json()))
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))


@pytest.mark.parametrize("family", sorted(timm_zoo.FAST))
def test_fast_timm_zoo(family):
    _check(family, timm_zoo.FAST[family])


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("family", timm_zoo.families())
def test_full_timm_zoo(family):
    if family in SKIPPED:
        pytest.skip(SKIPPED[family])
    _check(family, timm_zoo.smallest(family))


@pytest.mark.slow
def test_fast_sample_is_the_smallest_model_of_each_family():
    assert {f: timm_zoo.smallest(f) for f in timm_zoo.FAST} == timm_zoo.FAST


def test_fast_sample_names_real_families():
    families = set(timm_zoo.families())
    assert set(timm_zoo.FAST) <= families and set(REFUSED) <= families and set(SKIPPED) <= families
