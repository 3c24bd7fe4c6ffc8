"""What a rollback of a surgery needs: the tensors it replaced, kept in memory or in a spill file.

A small surgery keeps the replaced tensors as they are (a rollback just puts them back). A large one (more than
``SPILL_BYTES`` replaced in all) writes each replaced tensor to an unnamed temporary file as soon as its kept
slices are cut, and empties the tensor object at once: the memory of the unpruned weights is given back tensor
by tensor, so the peak of a surgery is the model plus one tensor, not the model twice (the file lives in the
page cache and on disk, and is deleted unread when the surgery is final). A rollback reads every tensor back
into its own object, bit for bit, whatever happened to the new tensors meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from secateurs.surgery.spill import SPILL_BYTES, SliceStore


def sliced(t: torch.Tensor, dims: dict[int, list[int]]) -> torch.Tensor:
    """``t`` cut to the kept indices of ``dims`` (dims in increasing order), as surgery cuts it; ``t`` unchanged."""
    out = t.detach()
    for d, idx in sorted(dims.items()):
        out = out.index_select(d, torch.as_tensor(idx, dtype=torch.long, device=t.device))
    return out.clone() if out.data_ptr() == t.data_ptr() and not t.is_meta else out


@dataclass
class Journal:
    """The replaced tensors a rollback restores. ``begin(total_bytes)`` picks memory or a spill file (above
    ``spill_bytes``); ``slice`` cuts a tensor and, when spilling, writes it away and empties it."""

    spill_bytes: int = SPILL_BYTES
    released: list[tuple[torch.Tensor, Any]] = field(default_factory=list)  # (emptied tensor, its handle)
    _store: SliceStore | None = None

    def begin(self, total_bytes: int) -> None:
        if self._store is None and total_bytes > self.spill_bytes:
            self._store = SliceStore(spill=True)

    @property
    def spilling(self) -> bool:
        return self._store is not None

    def slice(self, t: torch.Tensor, dims: dict[int, list[int]]) -> torch.Tensor:
        out = sliced(t, dims)
        if self._store is not None and _owns_storage(t):
            self.released.append((t, self._store.put(t)))
            with torch.no_grad():
                t.data = torch.empty(0, dtype=t.dtype, device=t.device)
        return out

    def restore(self) -> None:
        """Refill every emptied tensor with its values before surgery (the same objects, bit for bit)."""
        if self._store is not None:
            for t, handle in reversed(self.released):
                with torch.no_grad():
                    t.data = self._store.get(handle).to(t.device)
        self.drop()

    def drop(self) -> None:
        """Forget the replaced tensors (the surgery is final); the spill file is deleted."""
        self.released.clear()
        if self._store is not None:
            self._store.close()
            self._store = None


def _owns_storage(t: torch.Tensor) -> bool:
    if t.is_meta or t.numel() == 0 or not t.is_contiguous() or t.storage_offset() != 0:
        return False
    return t.untyped_storage().nbytes() == t.numel() * t.element_size()
