"""Tensors set aside for a while, in memory or in a temporary file (so that holding them costs no memory):
the values a masked verification zeroes, the tensors a surgery replaces until it is final."""

from __future__ import annotations

import tempfile
from types import TracebackType
from typing import IO, Any

import torch

#: tensors set aside above this many bytes in all go to a temporary file, not to memory
SPILL_BYTES = 256 * 2**20


class SliceStore:
    """``put(t)`` returns a handle, ``get(handle)`` the same values (on the CPU). With ``spill=True`` the values
    are written to an unnamed temporary file, read back on ``get``; the file is gone when the store closes."""

    def __init__(self, spill: bool) -> None:
        self._file: IO[bytes] | None = (
            tempfile.TemporaryFile(prefix="secateurs-slices-") if spill else None)  # noqa: SIM115  # closed by close()

    def __enter__(self) -> SliceStore:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def put(self, t: torch.Tensor) -> Any:
        if self._file is None:
            return t.clone()
        data = t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)
        offset = self._file.seek(0, 2)
        self._file.write(memoryview(data.numpy()))  # type: ignore[arg-type]
        return (offset, data.numel(), t.dtype, tuple(t.shape))

    def get(self, handle: Any) -> torch.Tensor:
        if self._file is None:
            return handle
        offset, nbytes, dtype, shape = handle
        out = torch.empty(nbytes, dtype=torch.uint8)
        if nbytes:
            self._file.seek(offset)
            self._file.readinto(memoryview(out.numpy()))  # type: ignore[attr-defined,arg-type]
        return out.view(dtype).reshape(shape)
