"""One vocabulary: the pruning flags of ``secateurs prune`` are PruneConfig's fields, generated from them."""

from __future__ import annotations

import dataclasses
import json

import pytest

from secateurs.cli._config_flags import NOT_GENERATED, TARGET_FLAGS, config_from_args
from secateurs.cli.config import options
from secateurs.cli.main import build_parser, main
from secateurs.config import PruneConfig
from secateurs.targets import Budget, Ratio

SPEC = "secateurs.testing.models:TinyResNet"


def _prune_parser():
    parser = build_parser()
    return parser, options("prune")


def test_every_config_field_is_a_prune_option_and_back():
    _, opts = _prune_parser()
    fields = {f.name for f in dataclasses.fields(PruneConfig)}
    generated = fields - set(NOT_GENERATED)
    assert generated <= set(opts), sorted(generated - set(opts))
    assert set(TARGET_FLAGS) <= set(opts)
    # every pruning flag of prune names a field (or a target); the rest are I/O and measurement flags
    pruning_like = {d for d, a in opts.items() if a.help and "PruneConfig" not in a.help}
    for dest in generated:
        field = PruneConfig.__dataclass_fields__[dest]
        assert opts[dest].help.startswith(field.metadata["help"]), dest  # help text comes from the field
    assert pruning_like  # the parser was built


def test_flags_build_the_same_config_as_keywords():
    parser = build_parser()
    args = parser.parse_args(["prune", SPEC, "-o", "x", "--ratio", "channels=0.3,heads=0.25", "--importance", "l1",
                              "--ignore", "fc", "--ignore", "layer3.*", "--round-to", "8", "--min-keep", "2",
                              "--seed", "3", "--scope", "global", "--normalize", "max", "--max-ratio", "0.8",
                              "--check", "full", "--tolerance", "1e-3"])
    got = config_from_args(args)
    want = PruneConfig(target=Ratio({"channels": 0.3, "heads": 0.25}), importance="l1", ignore=("fc", "layer3.*"),
                       round_to=8, min_keep=2, seed=3, scope="global", normalize="max", max_ratio=0.8, check="full",
                       tolerance=1e-3)
    assert got == want
    args = parser.parse_args(["prune", SPEC, "-o", "x", "--macs", "0.5", "--check", "false"])
    assert config_from_args(args) == PruneConfig(target=Budget(macs=0.5), check=False)


def test_two_targets_are_refused(tmp_path, capsys):
    rc = main(["prune", SPEC, "--input-shape", "1,3,32,32", "-o", str(tmp_path / "o"), "--ratio", "0.3",
               "--macs", "0.5", "--dry-run"])
    assert rc == 2
    assert "pass one target, not ratio and macs" in capsys.readouterr().err


@pytest.mark.parametrize("extra", [[], ["--importance", "l1", "--round-to", "4"], ["--params", "0.6"]])
def test_dry_run_plan_records_its_config_and_replays(tmp_path, extra):
    import torch

    import secateurs as sc
    from secateurs.testing.models import TinyResNet

    out = tmp_path / "o"
    rc = main(["prune", SPEC, "--input-shape", "1,3,32,32", "-o", str(out), "--dry-run", "--quiet", *extra])
    assert rc == 0
    doc = json.loads((out / "plan.json").read_text())
    plan = sc.Plan.from_dict(doc)
    assert isinstance(plan.config, PruneConfig)
    torch.manual_seed(0)
    again = sc.plan(TinyResNet(), torch.randn(1, 3, 32, 32), plan.config)
    assert again.keep == plan.keep
