"""Write files so that a crash or a full disk never leaves a half-written one behind."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def _current_umask() -> int:
    # os.umask can only be read by setting it, for the whole process: a file another thread creates in
    # between gets the temporary mask. Linux reports the mask without changing it.
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)  # elsewhere: a strict mask for that instant, so that nothing is created too open
    os.umask(mask)
    return mask


def _final_mode(path: Path) -> int:
    """The permissions ``path`` gets: an existing file's own, else what ``open()`` would give a new file."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o666 & ~_current_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``.

    The temporary file lives in the same directory so that the final ``os.replace`` is atomic.
    If the block raises, the temporary file is removed and ``path`` is left untouched. The file keeps
    the permissions of the one it replaces; a new one gets the usual ``0o666 & ~umask``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # set the mode only now: writers such as safetensors' save_file replace the temporary file with a
        # new one, and mkstemp's file (or theirs) is private (0600)
        os.chmod(tmp_path, _final_mode(path))
        fd = os.open(tmp_path, os.O_RDONLY)  # on disk before the rename, as atomic_open does
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a file for writing that appears at ``path`` only once it is complete."""
    if not mode.startswith("w"):
        raise ValueError(f"atomic_open writes only, got mode {mode!r}")
    with atomic_path(path) as tmp:
        with open(tmp, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
