import json

import pytest
import torch

from secateurs.cli.main import main

SPEC = "secateurs.testing.models:TinyViT"
SHAPE = "1,3,16,16"


@pytest.fixture(scope="session")
def pruned_dir(tmp_path_factory):
    """One `secateurs prune` run shared by the CLI tests (TinyViT: channels, heads and Linear layers)."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("cli") / "vit"
    rc = main(["prune", SPEC, "--input-shape", SHAPE, "-o", str(out), "--ratio", "0.5", "--repeats", "2",
               "--batch-sizes", "1,4", "--int8", "--quiet"])
    assert rc == 0
    return out


@pytest.fixture
def run_json(capsys):
    """Run the CLI with --json: (exit code, parsed stdout, stderr)."""

    def run(argv):
        capsys.readouterr()
        rc = main([*argv, "--json"])
        out = capsys.readouterr()
        return rc, (json.loads(out.out) if out.out.strip() else None), out.err

    return run
