"""Atomic writes: build in a hidden, marked temp dir next to the target, then rename; replace only what we wrote.

Temp entries are named ``.TARGET.secateurs-tmp-HOST-PID-XXXX`` and backups of a replaced directory
``.TARGET.secateurs-old-HOST-PID-XXXX`` (``HOST`` a hash of the host name). The next write into the same
folder (:func:`recover_stale`) removes the temp entries of processes on this host that are gone (``kill -9``)
and puts a backup back when its target is missing (a crash between the two renames of a replacement).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

from secateurs.errors import InvalidArgumentError

TMP, OLD = "tmp", "old"
_MARKED = re.compile(r"^\.(?P<name>.+)\.secateurs-(?P<kind>tmp|old)-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[^/]+$")
#: files secateurs writes into an output directory; a directory holding anything else is never replaced
OWNED_FILES = frozenset({
    "model.safetensors", "plan.json", "manifest.json", "sparsity.safetensors", "model.int8.safetensors", "model.pt2",
    "report.json", "report.md", "report.html", "model.onnx", "model.onnx.data", "model.int8.onnx",
    "model.int8.onnx.data", "sensitivity.json", "sensitivity.md", "sensitivity.png", "overrides.json",
})
_MAX_MARKER_BYTES = 64 << 20


def _host() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _prefix(target: Path, kind: str) -> str:
    return f".{target.name}.secateurs-{kind}-{_host()}-{os.getpid()}-"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, someone else's
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def recover_stale(directory: str | os.PathLike[str]) -> None:
    """Clean up after secateurs processes on this host that died while writing into ``directory``: their temp
    entries are removed; a backup whose target is missing is renamed back (with a warning), else removed."""
    root = Path(directory)
    try:
        entries = list(root.iterdir())
    except OSError:
        return
    host = _host()
    for entry in entries:
        match = _MARKED.match(entry.name)
        if match is None or match["host"] != host or _alive(int(match["pid"])):
            continue
        target = root / match["name"]
        if match["kind"] == OLD and not os.path.lexists(target):
            try:
                os.replace(entry, target)
            except OSError:
                continue
            warnings.warn(f"restored {target} from the backup an interrupted secateurs run (pid {match['pid']}) left "
                          "while replacing it", stacklevel=3)
        else:
            _remove(entry)


def marked_temp(target: Path, kind: str = TMP, *, directory: bool = False) -> Path:
    """Create (empty) and return a marked temp file or dir next to ``target``, for this process."""
    if directory:
        return Path(tempfile.mkdtemp(prefix=_prefix(target, kind), dir=target.parent))
    fd, name = tempfile.mkstemp(prefix=_prefix(target, kind), dir=target.parent)
    os.close(fd)
    return Path(name)


def is_marked_temp(name: str) -> bool:
    return _MARKED.match(name) is not None


def _manifest_files(root: Path) -> set[str] | None:
    """Names the secateurs manifest of ``root`` lists, or None when it has none."""
    path = root / "manifest.json"
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > _MAX_MARKER_BYTES:
            return None
        doc = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != "secateurs":
        return None
    files = doc.get("files")
    return {n for n in files if isinstance(n, str) and "/" not in n} if isinstance(files, dict) else set()


def _plan_files(root: Path) -> set[str]:
    """Names the plan of an out-of-core checkpoint directory lists as written by that prune (``settings.files``)."""
    path = root / "plan.json"
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > _MAX_MARKER_BYTES:
            return set()
        doc = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError, RecursionError):
        return set()
    settings = doc.get("settings") if isinstance(doc, dict) else None
    files = settings.get("files") if isinstance(settings, dict) else None
    return {n for n in files if isinstance(n, str) and "/" not in n} if isinstance(files, list) else set()


def _json_has(path: Path, keys: tuple[str, ...]) -> bool:
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > _MAX_MARKER_BYTES:
            return False
        doc = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(doc, dict) and all(k in doc for k in keys)


def not_ours(target: Path) -> str | None:
    """Why ``target`` (an existing directory) is not a directory secateurs wrote, or None when it is: it must
    hold a secateurs manifest, a plan (``--dry-run``) or a sensitivity result, and nothing secateurs did not write."""
    listed = _manifest_files(target)
    ours = listed is not None or _json_has(target / "plan.json", ("format", "keep", "shapes")) \
        or _json_has(target / "sensitivity.json", ("rows", "ratios"))
    if not ours:
        return "holds no manifest.json, plan.json or sensitivity.json written by secateurs"
    known = OWNED_FILES | (listed or set()) | _plan_files(target)
    foreign = sorted(p.name for p in target.iterdir()
                     if p.is_symlink() or not p.is_file() or not (p.name in known or is_marked_temp(p.name)))
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        return f"holds entries secateurs did not write ({shown})"
    return None


def _nearest_existing(path: Path) -> Path:
    while not os.path.lexists(path) and path.parent != path:
        path = path.parent
    return path


def check_writable(target: Path) -> None:
    """``target`` can be created: no ancestor is a file, and the nearest existing ancestor is a writable folder."""
    existing = _nearest_existing(target.parent)
    if not existing.is_dir():
        raise InvalidArgumentError(f"output path {str(target)!r} is under {str(existing)!r}, which is not a folder; "
                                   "choose another output path")
    try:
        probe = Path(tempfile.mkdtemp(prefix=_prefix(target, TMP), dir=existing))
    except OSError as exc:
        raise InvalidArgumentError(f"output path {str(target)!r}: cannot write into {str(existing)!r} "
                                   f"({exc.strerror or exc}); choose a writable location") from None
    probe.rmdir()


def check_target(target: str | os.PathLike[str], overwrite: bool) -> None:
    """Fail now, before any work, unless ``target`` can be written: it is new, or ``overwrite`` is set and it is a
    directory secateurs wrote (see :func:`not_ours`); its folder must be writable."""
    target = Path(target).absolute()
    if target.parent.is_dir():
        recover_stale(target.parent)
    if os.path.lexists(target) and not overwrite:
        raise InvalidArgumentError(f"output directory {str(target)!r} already exists; pass overwrite=True (CLI: --force) "
                                   "to replace it, or choose another path")
    check_writable(target)
    if not os.path.lexists(target):
        return
    if target.is_symlink() or not target.is_dir():
        raise InvalidArgumentError(f"output path {str(target)!r} exists and is not a directory"
                                   f"{' (a symbolic link)' if target.is_symlink() else ''}; it is never replaced")
    reason = not_ours(target)
    if reason is not None:
        raise InvalidArgumentError(f"output directory {str(target)!r} {reason}; overwrite=True (CLI: --force) replaces "
                                   "only a directory secateurs wrote. Move its contents away or choose another path")


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield a temp dir to fill; on success it replaces ``target``, on any error nothing is left behind.

    A replaced directory is renamed to a marked backup first, the new one renamed into place, then the backup
    deleted: a crash between the renames leaves the backup, which the next write restores (:func:`recover_stale`).
    """
    target = Path(target).absolute()
    check_target(target, overwrite)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = marked_temp(target, TMP, directory=True)
    except OSError as exc:
        raise InvalidArgumentError(f"cannot create {str(target)!r}: {exc.strerror or exc}") from None
    try:
        yield tmp
        _normal_permissions(tmp)
        _fsync_dir(tmp)
        if os.path.lexists(target):
            check_target(target, overwrite)  # re-check: someone may have created or filled it meanwhile
            old = marked_temp(target, OLD, directory=True)
            os.rmdir(old)
            os.replace(target, old)
            try:
                os.replace(tmp, target)
            except BaseException:
                os.replace(old, target)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
        _fsync_dir(target.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def staged_file(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a marked temp path next to ``target`` to write; on success it is renamed to ``target``, on any error
    removed (the old ``target``, if any, stays)."""
    target = Path(target).absolute()
    recover_stale(target.parent)
    tmp = marked_temp(target, TMP)
    try:
        yield tmp
        _normal_mode(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.lexists(tmp):
            tmp.unlink()


def write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def replace_file(path: Path, data: bytes) -> None:
    """Replace one file atomically (marked temp file in the same dir + rename)."""
    with staged_file(path) as tmp:
        write_bytes(tmp, data)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _normal_mode(path: Path) -> None:
    """mkstemp makes 0600 files; give the file the usual umask mode."""
    os.chmod(path, 0o666 & ~_umask())


def _normal_permissions(root: Path) -> None:
    """mkdtemp makes 0700 dirs (and some writers 0600 files); give the result the usual umask modes."""
    umask = _umask()
    os.chmod(root, 0o777 & ~umask)
    for p in root.iterdir():
        if p.is_file():
            os.chmod(p, 0o666 & ~umask)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
