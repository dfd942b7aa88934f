"""Write files so that a crash or a full disk never leaves a half-written one behind."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import stat
import tempfile
import threading
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


def _writer_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that writers raise for what is an I/O failure (safetensors' "I/O error: File too large")."""
    try:
        from safetensors import SafetensorError
    except ImportError:  # imported only on failure: writing a JSON file must not need safetensors
        return ()
    return (SafetensorError,)


def _is_temporary_of(name: object, dest: Path) -> bool:
    """Whether an error's file name is one of the temporary files made for ``dest`` (see ``atomic_path``)."""
    return isinstance(name, str) and Path(name).parent == dest.parent \
        and Path(name).name.startswith(f".{dest.name}.") and name.endswith(".part")


# what a failed write reports when it names no file: a full disk or quota, a file too large, an I/O error,
# a read-only file system
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS}


def _as_write_failure(exc: BaseException, shown: Path, dest: Path) -> OSError | None:
    """``exc`` as an OSError naming the file the caller asked for, or ``None`` to let it through as it is.

    Failures to write (disk full, file too large) name the temporary file or no file at all, and writers
    such as safetensors raise their own exception types for them: the user needs the destination, and the
    command line reports OSErrors as one line. The block's own exceptions pass unchanged: its OSError
    subclasses (a DownloadError that a mirror fallback catches by type) and OSErrors about other files
    (an input that does not exist) included.
    """
    if isinstance(exc, OSError) and type(exc).__module__ == "builtins":
        named = {exc.filename, exc.filename2} - {None}
        if not named and exc.errno not in _WRITE_ERRNOS:
            return None  # a connection reset or a timeout inside the block is not a failure to write the file
        named -= {str(shown), str(dest)}
        if not all(_is_temporary_of(name, dest) for name in named):
            return None
        if exc.errno is None:
            return type(exc)(f"cannot write {shown}: {exc}")
        # the same class, errno and reason as the original, so that ``except FileNotFoundError`` still works
        return type(exc)(exc.errno, exc.strerror or os.strerror(exc.errno), str(shown))
    if isinstance(exc, _writer_errors()):
        return OSError(f"cannot write {shown}: {exc}")
    return None


def _raise_system_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # the status a shell reports for a process ended by the signal


@contextlib.contextmanager
def _sigterm_cleans_up() -> Iterator[None]:
    """While the block runs, make SIGTERM raise SystemExit so that ``atomic_path`` removes its temporary file.

    Python handles SIGINT as KeyboardInterrupt, which the cleanup sees, but by default SIGTERM ends the
    process on the spot and leaves the (possibly 100 MB) ``.part`` file behind. Only the default action is
    replaced: a handler the program installed (a server's graceful shutdown) or an ignored SIGTERM is kept,
    and outside the main thread, where handlers cannot be set, nothing changes.
    """
    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    try:
        previous = signal.signal(signal.SIGTERM, _raise_system_exit)
    except ValueError:  # not the main interpreter, where handlers cannot be set either
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _destination(path: Path) -> Path:
    """The file that ``path`` names: a symlink is followed, so that ``current.owl → v3.owl`` stays a link
    and v3.owl is what changes.

    Only a link of one's own is followed, as the kernel's ``fs.protected_symlinks`` does in sticky shared
    folders: someone else's link in /tmp pointing at ~/.bashrc must not make a model overwrite it. Another
    user's link is replaced by the file itself.
    """
    if path.is_symlink() and os.lstat(path).st_uid != os.getuid():
        real = Path(os.path.abspath(path))
    else:
        real = Path(os.path.realpath(path))
    if real.is_dir():
        link = f" (a link to {real})" if path.is_symlink() else ""
        raise IsADirectoryError(errno.EISDIR, f"cannot write {path}: it is a directory{link}; give a file path")
    return real


def _temporary_next_to(dest: Path) -> Path:
    # the same directory as the file it replaces, so that the final os.replace is atomic
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    return Path(tmp)


def _commit(tmp: Path, dest: Path) -> None:
    # set the mode only now: writers such as safetensors' save_file replace the temporary file with a
    # new one, and mkstemp's file (or theirs) is private (0600)
    os.chmod(tmp, _final_mode(dest))
    fd = os.open(tmp, os.O_RDONLY)  # on disk before the rename, as atomic_open does
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, dest)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``.

    The temporary file lives in the same directory so that the final ``os.replace`` is atomic.
    If the block raises, or the process gets SIGINT or SIGTERM, the temporary file is removed and ``path``
    is left untouched. A symlink at ``path`` keeps pointing where it did, at the updated file. The file
    keeps the permissions of the one it replaces; a new one gets the usual ``0o666 & ~umask``.
    A failure to write (disk full, file too large, a directory at ``path``) is raised as an OSError that
    names ``path``; the block's own exceptions pass unchanged.
    """
    shown = Path(path)
    dest = _destination(shown)
    with _sigterm_cleans_up():
        tmp = None
        try:
            tmp = _temporary_next_to(dest)
            yield tmp
            _commit(tmp, dest)
        except BaseException as exc:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            failure = _as_write_failure(exc, shown, dest)
            if failure is None:
                raise
            raise failure from exc


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
