"""importance="auto" / compensate="auto": l2 without data, the kind's measured choice with data, recorded resolved."""

import pytest
import torch

import secateurs as sc
from secateurs.compensation.methods import METHODS
from secateurs.config import AUTO, PruneConfig
from secateurs.planning.defaults import DEFAULTS, GRAM_LIMIT_BYTES, fit_memory, model_kind, resolve
from secateurs.scoring.registry import CRITERIA
from secateurs.testing.hf import tiny, token_batches

transformers = pytest.importorskip("transformers")


def _mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))


@pytest.mark.parametrize("kind", sorted(DEFAULTS.names()))
def test_every_default_names_a_registered_criterion_and_method(kind):
    d = DEFAULTS.get(kind)
    assert d.importance in CRITERIA and getattr(CRITERIA.get(d.importance)(), "needs_data", False)
    assert d.compensate is None or d.compensate in METHODS
    assert d.evidence


def test_model_kinds():
    assert model_kind(_mlp()) == "other"
    assert model_kind(tiny("llama").model) == "causal_lm"
    assert model_kind(tiny("bert").model) == "transformer"
    assert set(DEFAULTS.names()) == {"causal_lm", "transformer", "other"}


def test_without_calibration_auto_is_l2_and_no_compensation():
    model = _mlp()
    x = torch.randn(4, 8)
    assert PruneConfig().importance == AUTO and PruneConfig().compensate == AUTO
    report = sc.prune(model, x, ratio=0.5)
    assert report.plan.config.importance == "l2" and report.plan.config.compensate is None
    assert report.plan.settings["defaults"]["reason"].startswith("no calibration")
    assert report.compensation is None


def test_with_calibration_auto_is_the_kinds_choice_and_replays():
    model = _mlp()
    x = torch.randn(4, 8)
    calib = [torch.randn(16, 8) for _ in range(3)]
    report = sc.prune(model, x, ratio=0.5, calibration=calib)
    chosen = DEFAULTS.get("other")
    cfg = report.plan.config
    assert (cfg.importance, cfg.compensate) == (chosen.importance, chosen.compensate)
    assert report.compensation is not None and report.compensation.error_after <= report.compensation.error_before
    assert report.plan.settings["defaults"]["kind"] == "other"
    replay = sc.plan(_mlp(), x, PruneConfig.from_json(cfg.to_json()), calibration=calib)
    assert replay.keep == report.plan.keep and replay.config == cfg


def test_a_named_criterion_gets_no_automatic_compensation_and_none_turns_it_off():
    config, record = resolve(PruneConfig(importance="l1"), _mlp(), [torch.randn(2, 8)])
    assert config.importance == "l1" and config.compensate is None and record is not None
    config, record = resolve(PruneConfig(compensate="none"), _mlp(), [torch.randn(2, 8)])
    assert config.compensate is None and config.importance == DEFAULTS.get("other").importance
    config, record = resolve(PruneConfig(importance="l1", compensate="bias"), _mlp(), [torch.randn(2, 8)])
    assert record is None and config.compensate == "bias"


def test_one_shot_batches_and_large_grams_change_the_compensation():
    config, record = resolve(PruneConfig(), _mlp(), iter([torch.randn(2, 8)]))
    assert config.compensate is None and "read twice" in record["reason"]
    config, record = resolve(PruneConfig(), _mlp(), [torch.randn(2, 8)])
    assert fit_memory(config, record, GRAM_LIMIT_BYTES + 1).compensate == "bias" and "GiB" in record["reason"]


def test_causal_lm_defaults_on_a_tiny_llama():
    model = tiny("llama").model
    x = {"input_ids": token_batches(1)[0]["input_ids"], "use_cache": False}
    plan = sc.plan(model, x, ratio={"channels": 0.25}, calibration=token_batches(2))
    assert plan.settings["importance"] == "wanda" and plan.config.importance == "wanda"
    assert plan.config.compensate == "lstsq"
