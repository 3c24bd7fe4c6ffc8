"""Calibration batches from a folder of images, a text file, or random ("synthetic") inputs.

Each source yields batches shaped like the example input (an :class:`InputSpec`): images are resized to
its ``H x W`` and normalised, text is tokenized into windows of its sequence length.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from secateurs.errors import InvalidArgumentError
from secateurs.io.inputs import InputSpec

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
TEXT_SUFFIXES = (".txt", ".text", ".md")
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
SYNTHETIC_WARNING = ("synthetic calibration: the batches are random noise, so data-driven criteria (activation, "
                     "apoz, wanda, taylor, ...) rank units by their response to noise, not to your data; use a "
                     "folder of images or a text file for meaningful scores")
FORMS = "a folder of images, a .txt file, or 'synthetic'"


@dataclass
class CalibrationSource:
    """Batches ready for ``calibration=``, with what they are and any caveat worth reporting."""

    kind: str  # "images" | "text" | "synthetic"
    batches: list[Any]
    description: str
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "batches": len(self.batches), "description": self.description, "notes": list(self.notes)}


def calibration_source(
    source: str,
    spec: InputSpec,
    *,
    max_batches: int = 8,
    tokenizer_dir: str | Path | None = None,
    normalize: str = "imagenet",
) -> CalibrationSource:
    """Build calibration batches from ``source``: a directory of images, a text file, or ``"synthetic"``.

    ``tokenizer_dir`` (an ``hf:`` model directory) gives the tokenizer for text; without one, UTF-8 bytes
    are used as token ids (with a note). ``normalize``: ``"imagenet"`` mean/std for 3-channel images, or ``"none"``.
    """
    if not isinstance(source, (str, os.PathLike)):
        raise InvalidArgumentError(f"a calibration source is a path or 'synthetic', got {source!r:.60}")
    if isinstance(max_batches, bool) or not isinstance(max_batches, int) or max_batches < 1:
        raise InvalidArgumentError(f"calibration needs at least 1 batch, got max_batches={max_batches!r}")
    if source == "synthetic":
        warnings.warn(SYNTHETIC_WARNING, stacklevel=2)
        batches = [spec.make(seed=1000 + i) for i in range(max_batches)]
        return CalibrationSource("synthetic", batches, f"{max_batches} batches of random inputs ({spec.describe()})",
                                 [SYNTHETIC_WARNING])
    path = Path(source).expanduser()
    if source_kind(source) == "images":
        return _images(path, spec, max_batches, normalize)
    return _text(path, spec, max_batches, tokenizer_dir)


def source_kind(source: str) -> str:
    """"images", "text" or "synthetic" for a usable source string; a clear error otherwise (nothing is read)."""
    if not isinstance(source, (str, os.PathLike)):
        raise InvalidArgumentError(f"a calibration source is a path or 'synthetic', got {source!r:.60}")
    if source == "synthetic":
        return "synthetic"
    path = Path(source).expanduser()
    if path.is_dir():
        return "images"
    if path.is_file() and path.suffix.lower() in TEXT_SUFFIXES:
        return "text"
    what = "does not exist" if not path.exists() else f"is a {path.suffix or 'suffix-less'} file"
    raise InvalidArgumentError(f"calibration source {source!r} {what}; use {FORMS}")


def _images(root: Path, spec: InputSpec, max_batches: int, normalize: str) -> CalibrationSource:
    if spec.shape is None or len(spec.shape) != 4 or spec.shape[1] not in (1, 3):
        raise InvalidArgumentError(f"calibration images need an image input N,C,H,W with C = 1 or 3 (--input-shape); "
                                   f"the model takes {spec.describe()}")
    if normalize not in ("imagenet", "none"):
        raise InvalidArgumentError(f"image normalisation must be 'imagenet' or 'none', got {normalize!r}")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InvalidArgumentError(f"calibration folder {str(root)!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    n, c, h, w = spec.shape
    files = files[: n * max_batches]
    images = torch.stack([_load_image(p, c, h, w) for p in files])
    if normalize == "imagenet" and c == 3:
        mean, std = torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1)
        images = (images - mean) / std
    batches = list(images.split(n))
    notes = [] if len(files) >= n else [f"only {len(files)} image(s) found: one batch smaller than {n}"]
    desc = f"{len(files)} images from {root} resized to {h}x{w}, {normalize} normalisation, {len(batches)} batches"
    return CalibrationSource("images", batches, desc, notes)


def _load_image(path: Path, c: int, h: int, w: int) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            resized = img.convert("RGB" if c == 3 else "L").resize((w, h), Image.Resampling.BILINEAR)
            data = torch.frombuffer(bytearray(resized.tobytes()), dtype=torch.uint8)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError, SyntaxError) as exc:
        raise InvalidArgumentError(f"calibration image {str(path)!r} cannot be read ({str(exc)[:160]}); remove it or "
                                   "fix it") from None
    return data.reshape(h, w, c).permute(2, 0, 1).float() / 255.0


def _text(path: Path, spec: InputSpec, max_batches: int, tokenizer_dir: str | Path | None) -> CalibrationSource:
    if spec.seq_len is None:
        raise InvalidArgumentError(f"a text calibration file needs a text model input (--seq-len N); the model takes "
                                   f"{spec.describe()}")
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgumentError(f"calibration text {str(path)!r} cannot be read as UTF-8 ({exc})") from None
    if not text.strip():
        raise InvalidArgumentError(f"calibration text {str(path)!r} is empty")
    notes: list[str] = []
    ids = _tokenize(text, tokenizer_dir, spec.vocab_size, notes)
    window = spec.seq_len * spec.batch
    need = window * max_batches
    if len(ids) < window:
        notes.append(f"the text has {len(ids)} tokens, fewer than one batch ({window}): it is repeated to fill it")
        ids = (ids * (window // max(1, len(ids)) + 1))[:window]
    ids = ids[: min(len(ids) // window * window, need)]
    tokens = torch.tensor(ids, dtype=torch.long).reshape(-1, spec.batch, spec.seq_len)
    batches = [{"input_ids": t} for t in tokens]
    desc = f"{len(ids)} tokens from {path} in {len(batches)} batches of {spec.batch}x{spec.seq_len}"
    return CalibrationSource("text", batches, desc, notes)


def _tokenize(text: str, tokenizer_dir: str | Path | None, vocab_size: int, notes: list[str]) -> list[int]:
    if tokenizer_dir is not None and _has_tokenizer(Path(tokenizer_dir)):
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
        ids = list(tok(text, add_special_tokens=False)["input_ids"])
        if ids and max(ids) >= vocab_size:
            raise InvalidArgumentError(f"the tokenizer in {tokenizer_dir} produces ids up to {max(ids)}, beyond the "
                                       f"model's vocab_size {vocab_size}")
        return ids
    reason = "the model has no tokenizer files" if tokenizer_dir is not None else "no tokenizer (not an hf: model)"
    note = (f"byte-level fallback ({reason}): token ids are UTF-8 byte values"
            f"{f' modulo {vocab_size}' if vocab_size < 256 else ''}, not the model's vocabulary, so activation "
            "statistics reflect byte patterns rather than real tokens")
    warnings.warn(note, stacklevel=4)
    notes.append(note)
    return [b % vocab_size for b in text.encode("utf-8")]


def _has_tokenizer(root: Path) -> bool:
    names = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model")
    return any((root / n).is_file() for n in names)
