"""Which weights are in memory while each step of the sequential calibration runs."""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager


class Residency:
    """All of them (this default). The out-of-core schedule (``secateurs.outofcore.parts.Resident``) loads the
    modules before the blocks for ``head``, one block for ``block(b)``, the modules before and after the blocks
    for ``tail``, and frees each after its step."""

    def head(self) -> AbstractContextManager[None]:
        return contextlib.nullcontext()

    def block(self, b: int) -> AbstractContextManager[None]:
        return contextlib.nullcontext()

    def tail(self) -> AbstractContextManager[None]:
        return contextlib.nullcontext()
