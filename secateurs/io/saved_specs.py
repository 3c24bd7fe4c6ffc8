"""``file:`` model specs: a directory written by ``secateurs.save`` (rebuilt with ``secateurs.load``) or a ``.pt2``
torch.export program."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from secateurs.io.inputs import InputSpec
from secateurs.io.loading import load
from secateurs.io.manifest import read_manifest
from secateurs.io.specs import SCHEMES, ModelSource, source_chain


@SCHEMES.register("file")
def _file(path: str, trust_code: bool) -> ModelSource:
    root = Path(path).expanduser().absolute()
    source_chain(f"file:{root}")  # a manifest naming itself (or a loop) fails here, not with a RecursionError
    if root.suffix == ".pt2":
        return _program(root)
    manifest = read_manifest(root)
    default = InputSpec.from_dict(manifest["input"]) if manifest.get("input") else None
    return ModelSource(f"file:{root}", "file", lambda: load(root, trust_code=trust_code), default, saved_dir=root)


def _program(path: Path) -> ModelSource:
    """A ``.pt2`` program: loaded now (its recorded example inputs give the default input and the fixed batch);
    the first ``build()`` returns that module, later ones load the file again."""
    from secateurs.io.program import load_program

    program = load_program(path)
    unused = [program.module]

    def build() -> nn.Module:
        return unused.pop() if unused else load_program(path).module

    return ModelSource(f"file:{path}", "program", build, program.input_spec())
