import contextlib
import os
import re
import signal
import stat
import subprocess
import sys
import tempfile
import threading

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


def test_symlink_keeps_pointing_at_the_updated_file(tmp_path):
    (tmp_path / "models").mkdir()
    target = tmp_path / "models" / "v3.owl"
    target.write_text("v3")
    link = tmp_path / "current.owl"
    link.symlink_to(os.path.join("models", "v3.owl"))  # relative, as `ln -s` makes it
    with atomic_open(link, "w") as fh:
        fh.write("v3, updated")
    assert link.is_symlink() and os.readlink(link) == os.path.join("models", "v3.owl")
    assert target.read_text() == "v3, updated"
    assert sorted(os.listdir(tmp_path)) == ["current.owl", "models"] and os.listdir(target.parent) == ["v3.owl"]


def test_dangling_symlink_gets_its_target_written(tmp_path):
    link = tmp_path / "current.owl"
    link.symlink_to("v4.owl")
    _write_with_atomic_open(link, "new")
    assert link.is_symlink() and (tmp_path / "v4.owl").read_text() == "new"


@pytest.mark.skipif(os.getuid() != 0, reason="giving a link to another user needs root")
def test_another_users_symlink_is_replaced_not_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    link = tmp_path / "model.owl"
    link.symlink_to(victim)
    os.lchown(link, 12345, 12345)  # planted by someone else, as in a shared /tmp
    _write_with_atomic_open(link, "model")
    assert victim.read_text() == "precious"
    assert not link.is_symlink() and link.read_text() == "model"


def _safetensors_error(message):
    from safetensors import SafetensorError

    return SafetensorError(message)


@pytest.mark.parametrize("error", [
    _safetensors_error("I/O error: File too large"),
    OSError(27, "File too large"),  # what a plain write() raises: no file name
])
def test_write_failure_names_the_destination_and_keeps_the_old_file(tmp_path, error):
    target = tmp_path / "m.owl"
    target.write_text("old")

    def failing_writer(path):
        with open(path, "wb") as fh:
            fh.write(b"half")
        raise error

    with pytest.raises(OSError, match=re.escape(str(target))) as info:
        with atomic_path(target) as tmp:
            failing_writer(tmp)
    assert "File too large" in str(info.value) and ".part" not in str(info.value)
    assert info.value.__cause__ is error
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["m.owl"]


def test_errno_and_class_of_a_write_failure_are_kept(tmp_path):
    with pytest.raises(PermissionError) as info:
        with atomic_path(tmp_path / "a.txt") as tmp:
            raise PermissionError(13, "Permission denied", str(tmp))
    assert info.value.errno == 13 and info.value.filename == str(tmp_path / "a.txt")


def test_errors_about_other_files_and_own_subclasses_pass_unchanged(tmp_path):
    class DownloadError(OSError):
        pass

    for error in [FileNotFoundError(2, "No such file or directory", str(tmp_path / "input.png")),
                  DownloadError("connection dropped"), ValueError("checksum mismatch"),
                  ConnectionResetError(104, "Connection reset by peer"), TimeoutError("the read timed out")]:
        with pytest.raises(type(error)) as info:
            with atomic_path(tmp_path / "a.txt"):
                raise error
        assert info.value is error
    assert os.listdir(tmp_path) == []


def test_a_directory_at_the_destination_is_named(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(IsADirectoryError, match=f"cannot write {re.escape(str(tmp_path / 'out'))}: it is a directory"):
        _write_with_atomic_open(tmp_path / "out", "x")
    assert os.listdir(tmp_path / "out") == [] and os.listdir(tmp_path) == ["out"]


def test_sigterm_handler_is_installed_only_during_the_write_and_restored():
    from owlearn._atomic import _raise_system_exit, _sigterm_cleans_up

    before = signal.getsignal(signal.SIGTERM)
    with _sigterm_cleans_up():
        during = signal.getsignal(signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is before
    assert during is (_raise_system_exit if before is signal.SIG_DFL else before)


def test_a_program_s_own_sigterm_handler_is_kept():
    from owlearn._atomic import _sigterm_cleans_up

    def own(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, own)
    try:
        with _sigterm_cleans_up():
            assert signal.getsignal(signal.SIGTERM) is own
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_sigterm_handler_is_left_alone_outside_the_main_thread():
    from owlearn._atomic import _sigterm_cleans_up

    seen = []

    def write():
        with _sigterm_cleans_up():
            seen.append(signal.getsignal(signal.SIGTERM))

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=write)
    thread.start()
    thread.join()
    assert seen == [before]


_WRITE_UNTIL_TERMINATED = """
import os, signal, sys, time
from owlearn._atomic import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"half")
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)  # the signal arrives long before: the test would fail on its timeout, not hang
"""


def test_sigterm_during_a_write_removes_the_temporary_file(tmp_path):
    target = tmp_path / "m.owl"
    target.write_text("old")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", _WRITE_UNTIL_TERMINATED, str(target)], env=env,
                          capture_output=True, timeout=20)
    assert done.returncode == 128 + signal.SIGTERM, done.stderr.decode()
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["m.owl"]
