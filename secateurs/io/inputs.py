"""Example-input specs: ``1,3,224,224`` for tensors, a sequence length for token-id models."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from secateurs.errors import InvalidArgumentError


@dataclass(frozen=True)
class InputSpec:
    """How to build example inputs: an image-like tensor ``shape``, or token ids of ``seq_len``."""

    shape: tuple[int, ...] | None = None
    seq_len: int | None = None
    vocab_size: int = 100
    constants: tuple[tuple[str, Any], ...] = ()  # keyword constants passed with token ids (use_cache=False)

    def __post_init__(self) -> None:
        if (self.shape is None) == (self.seq_len is None):
            raise InvalidArgumentError("give exactly one of an input shape (e.g. 1,3,224,224) or a sequence length")
        if self.shape is not None and (not self.shape or any(int(s) < 1 for s in self.shape)):
            raise InvalidArgumentError(f"input shape must be positive integers, got {self.shape}")
        if self.seq_len is not None and self.seq_len < 1:
            raise InvalidArgumentError(f"sequence length must be a positive integer, got {self.seq_len}")

    @staticmethod
    def parse_shape(text: str) -> InputSpec:
        if not isinstance(text, str):
            raise InvalidArgumentError(f"an input shape is text like 1,3,224,224, got {text!r:.60}")
        parts = [p.strip() for p in text.replace("x", ",").split(",") if p.strip()]
        try:
            shape = tuple(int(p) for p in parts)
        except ValueError:
            raise InvalidArgumentError(f"bad input shape {text!r}: expected comma-separated positive integers like 1,3,224,224") from None
        if not shape or any(s < 1 for s in shape):
            raise InvalidArgumentError(f"bad input shape {text!r}: expected comma-separated positive integers like 1,3,224,224")
        return InputSpec(shape=shape)

    @property
    def batch(self) -> int:
        return self.shape[0] if self.shape is not None else 1

    def make(self, batch: int | None = None, seed: int = 0) -> Any:
        """Example inputs with the given batch size (the spec's own batch by default)."""
        g = torch.Generator().manual_seed(seed)
        b = batch or self.batch
        if self.shape is not None:
            return torch.randn((b, *self.shape[1:]), generator=g)
        assert self.seq_len is not None
        return {"input_ids": torch.randint(0, self.vocab_size, (b, self.seq_len), generator=g), **dict(self.constants)}

    def to_dict(self) -> dict[str, Any]:
        if self.shape is not None:
            return {"shape": list(self.shape)}
        out: dict[str, Any] = {"seq_len": self.seq_len, "vocab_size": self.vocab_size}
        if self.constants:
            out["constants"] = dict(self.constants)
        return out

    @staticmethod
    def from_dict(d: dict[str, Any]) -> InputSpec:
        """The inverse of :meth:`to_dict`; a malformed mapping (e.g. a hand-edited manifest) is an
        ``InvalidArgumentError`` naming it."""
        if not isinstance(d, dict):
            raise InvalidArgumentError(f"an input spec must be a mapping like {{'shape': [1, 3, 224, 224]}}, got {d!r:.80}")
        try:
            if "shape" in d:
                if not isinstance(d["shape"], list) or not all(_count(s) for s in d["shape"]):
                    raise ValueError("shape")
                return InputSpec(shape=tuple(d["shape"]))
            constants = d.get("constants") or {}
            if not isinstance(constants, dict) or not all(isinstance(v, (bool, int, float, str, type(None)))
                                                          for v in constants.values()):
                raise InvalidArgumentError(f"input constants must map keywords to plain values, got {constants!r:.80}")
            seq_len, vocab = d["seq_len"], d.get("vocab_size", 100)
            if not _count(seq_len) or not _count(vocab):
                raise ValueError("seq_len")
            return InputSpec(seq_len=seq_len, vocab_size=vocab, constants=tuple(sorted(constants.items())))
        except (KeyError, TypeError, ValueError):
            raise InvalidArgumentError(f"malformed input spec {d!r:.120}: expected {{'shape': [N, C, H, W]}} or "
                                       "{'seq_len': N, 'vocab_size': V} with positive integers") from None

    def describe(self) -> str:
        return f"tensor {list(self.shape)}" if self.shape is not None else f"token ids, seq len {self.seq_len}"


def _count(value: Any) -> bool:
    """A positive integer (not a bool, not a float) small enough to allocate."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 1 << 31
