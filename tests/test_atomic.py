import os
import stat

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
