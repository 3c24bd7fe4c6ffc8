"""Real English sentences shipped with secateurs (from the Python docs; see assets/sentences/README.md)."""

from __future__ import annotations

from importlib import resources
from typing import Literal

from secateurs.errors import InvalidArgumentError

SPLITS = ("train", "heldout")


def load_sentences(split: Literal["train", "heldout"] = "train") -> list[str]:
    """The sentences of one split, in file order: ``"train"`` (4,581) or ``"heldout"`` (913); disjoint."""
    if split not in SPLITS:
        raise InvalidArgumentError(f"split must be one of {SPLITS}, got {split!r}")
    text = resources.files("secateurs.testing").joinpath("assets", "sentences", f"{split}.txt").read_text("utf-8")
    return [line for line in text.splitlines() if line]
