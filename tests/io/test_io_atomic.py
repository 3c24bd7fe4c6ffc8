"""Output directories: replace only what secateurs wrote, survive a crash mid-replacement, clean up after kill -9."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import secateurs
from secateurs.errors import InvalidArgumentError
from secateurs.io import atomic
from secateurs.io.atomic import atomic_dir, check_target, write_text


def _ours(path, text="old"):
    with atomic_dir(path, overwrite=True) as tmp:
        write_text(tmp / "plan.json", '{"format": 1, "keep": {}, "shapes": {}}')
        write_text(tmp / "report.md", text)
    return path


def _listing(root):
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*"))


def test_overwrite_replaces_a_directory_secateurs_wrote(tmp_path):
    target = _ours(tmp_path / "out")
    _ours(target, "new")
    assert (target / "report.md").read_text() == "new"
    assert _listing(tmp_path) == ["out", "out/plan.json", "out/report.md"]


@pytest.mark.parametrize("setup,match", [
    (lambda d: (d.mkdir(), (d / "notes.txt").write_text("mine")), "holds no manifest.json"),
    (lambda d: d.mkdir(), "holds no manifest.json"),
    (lambda d: (_ours(d), (d / "notes.txt").write_text("mine")), r"did not write \(notes.txt\)"),
    (lambda d: (_ours(d), (d / "sub").mkdir()), r"did not write \(sub\)"),
])
def test_overwrite_refuses_anything_else_and_leaves_it(tmp_path, setup, match):
    target = tmp_path / "out"
    setup(target)
    before = _listing(tmp_path)
    with pytest.raises(InvalidArgumentError, match=match), atomic_dir(target, overwrite=True) as tmp:
        write_text(tmp / "plan.json", "{}")
    assert _listing(tmp_path) == before


def test_a_symlink_or_file_at_the_target_is_never_replaced(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "file").write_text("x")
    for name in ("link", "file"):
        with pytest.raises(InvalidArgumentError, match="not a directory"):
            check_target(tmp_path / name, overwrite=True)


def test_output_under_a_file_fails_before_anything_is_written(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidArgumentError, match="not a folder"):
        check_target(tmp_path / "file" / "sub" / "out", overwrite=False)
    assert _listing(tmp_path) == ["file"]


def test_output_in_a_folder_that_cannot_be_written_fails_early(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(atomic.tempfile, "mkdtemp", refuse)
    with pytest.raises(InvalidArgumentError, match="cannot write into"):
        check_target(tmp_path / "out", overwrite=False)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_fails_early(tmp_path):
    (tmp_path / "ro").mkdir()
    os.chmod(tmp_path / "ro", 0o555)
    try:
        with pytest.raises(InvalidArgumentError, match="cannot write into"):
            check_target(tmp_path / "ro" / "out", overwrite=False)
    finally:
        os.chmod(tmp_path / "ro", 0o755)


def _run(code):
    env = {**os.environ, "PYTHONPATH": str(Path(secateurs.__file__).parents[1])}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, timeout=120)


def test_kill_between_the_two_renames_keeps_the_old_directory(tmp_path):
    target = _ours(tmp_path / "out", "old")
    done = _run(f"""
        import os, signal
        from secateurs.io import atomic
        real, calls = os.replace, []
        def replace(a, b):
            calls.append(a)
            real(a, b)
            if len(calls) == 1:  # old -> backup done; die before new -> target
                os.kill(os.getpid(), signal.SIGKILL)
        atomic.os.replace = replace
        with atomic.atomic_dir({str(target)!r}, overwrite=True) as tmp:
            atomic.write_text(tmp / "plan.json", '{{"format": 1, "keep": {{}}, "shapes": {{}}}}')
            atomic.write_text(tmp / "report.md", "new")
    """)
    assert done.returncode == -signal.SIGKILL
    assert not target.exists() and any(".secateurs-old-" in p.name for p in tmp_path.iterdir())
    with pytest.warns(UserWarning, match="restored"):
        check_target(target, overwrite=True)  # the next run puts the backup back first
    assert (target / "report.md").read_text() == "old"
    assert _listing(tmp_path) == ["out", "out/plan.json", "out/report.md"]


def test_temp_folders_of_killed_runs_are_removed_by_the_next_run(tmp_path):
    done = _run(f"""
        import os, signal
        from secateurs.io.atomic import atomic_dir, write_text
        with atomic_dir({str(tmp_path / "out")!r}) as tmp:
            write_text(tmp / "model.safetensors", "partial")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    assert done.returncode == -signal.SIGKILL
    assert [p.name for p in tmp_path.iterdir() if ".secateurs-tmp-" in p.name]
    (tmp_path / ".mine.tmp-123").mkdir()  # not marked by secateurs: left alone
    check_target(tmp_path / "other", overwrite=False)
    assert _listing(tmp_path) == [".mine.tmp-123"]


def test_temp_folders_of_live_processes_are_kept(tmp_path):
    alive = tmp_path / f".out.secateurs-tmp-{atomic._host()}-{os.getppid()}-abc"
    alive.mkdir()
    check_target(tmp_path / "other", overwrite=False)
    assert alive.exists()
