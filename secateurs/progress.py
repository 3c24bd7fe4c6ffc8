"""Progress bars (tqdm, on stderr) for the stages that can take a while, and one switch for all of them.

Library code never prints; these bars are the exception, and they show only when stderr is a terminal unless a
caller asks otherwise. ``set_progress(False)`` (the CLI's ``--quiet`` and ``--json``) turns every bar off;
``set_progress(True)`` shows them even when stderr is not a terminal.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

_SWITCH: list[bool | None] = [None]  # None: bars on a terminal only


def set_progress(enabled: bool | None) -> None:
    """True: always show bars; False: never; None: only when stderr is a terminal (the default)."""
    _SWITCH[0] = enabled


@contextlib.contextmanager
def progress_set(enabled: bool | None) -> Iterator[None]:
    """``set_progress(enabled)`` within the block, the previous setting after it."""
    before = _SWITCH[0]
    _SWITCH[0] = enabled
    try:
        yield
    finally:
        _SWITCH[0] = before


def _disable(enabled: bool | None) -> bool | None:
    switch = _SWITCH[0]
    if switch is False or enabled is False:
        return True
    if switch is True or enabled is True:
        return False
    return None  # tqdm: hide when stderr is not a terminal


def bar(items: Iterable[T], desc: str, total: int | None = None, enabled: bool | None = None) -> Iterable[T]:
    """``items`` with a bar named ``desc`` (``enabled`` as ``CalibrationData.progress``: None = on a terminal)."""
    from tqdm.auto import tqdm

    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    return tqdm(items, desc=desc, total=total, disable=_disable(enabled), leave=False)


@contextlib.contextmanager
def stage(desc: str, enabled: bool | None = None) -> Iterator[Any]:
    """A one-step bar around a single long call (e.g. the graph capture)."""
    from tqdm.auto import tqdm

    with tqdm(total=1, desc=desc, disable=_disable(enabled), leave=False) as t:
        yield t
        t.update(1)
