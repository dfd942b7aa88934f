import contextlib
import os
import stat
import tempfile

import pytest

from owlearn._atomic import atomic_open, atomic_path


def test_file_appears_complete_with_normal_permissions(tmp_path):
    with atomic_open(tmp_path / "a.txt", "w") as fh:
        fh.write("hello")
    mode = stat.S_IMODE(os.stat(tmp_path / "a.txt").st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.txt").read_text() == "hello" and mode == 0o666 & ~umask


def test_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["a.txt"]


@contextlib.contextmanager
def _umask(mask):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _write_with_atomic_open(path, text):
    with atomic_open(path, "w") as fh:
        fh.write(text)


def _write_like_safetensors(path, text):
    # safetensors' save_file writes a private file of its own and renames it onto the path it is given
    with atomic_path(path) as tmp:
        fd, own = tempfile.mkstemp(dir=tmp.parent)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(own, tmp)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("write", [_write_with_atomic_open, _write_like_safetensors])
@pytest.mark.parametrize("mask", [0o022, 0o077], ids=["umask022", "umask077"])
def test_new_file_gets_the_mode_of_the_umask(tmp_path, write, mask):
    with _umask(mask):
        write(tmp_path / "a.txt", "hello")
    assert (tmp_path / "a.txt").read_text() == "hello" and _mode(tmp_path / "a.txt") == 0o666 & ~mask


@pytest.mark.parametrize("write", [_write_with_atomic_open, _write_like_safetensors])
def test_replaced_file_keeps_its_mode(tmp_path, write):
    target = tmp_path / "a.txt"
    target.write_text("old")
    target.chmod(0o644)
    with _umask(0o077):  # a new file would be 0600: the old file's mode must win
        write(target, "new")
    assert target.read_text() == "new" and _mode(target) == 0o644
    assert os.listdir(tmp_path) == ["a.txt"]


def test_umask_without_proc_is_read_and_restored(monkeypatch):
    import owlearn._atomic as atomic

    def no_proc(*args, **kwargs):
        raise OSError("no /proc here")

    monkeypatch.setattr(atomic, "open", no_proc, raising=False)
    with _umask(0o027):
        assert atomic._current_umask() == 0o027 and os.umask(0o027) == 0o027
