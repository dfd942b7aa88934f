"""Checked downloads: stream to a temporary file, verify the checksum, then rename into place.

A file appears at its destination only once it is complete and matches its published checksum, so
the cache never holds a half-downloaded or corrupt file that a later run would trust. When the
network is unreachable the error says exactly which files to fetch by hand and where to put them.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING
from urllib.parse import urlsplit

from owlearn._atomic import atomic_path

if TYPE_CHECKING:  # rich is imported only when a bar is shown
    from rich.progress import Progress, TaskID

__all__ = [
    "MIRROR_ENV",
    "ChecksumError",
    "DownloadError",
    "OfflineError",
    "download",
    "file_digest",
    "mirror_url",
    "resolve_mirror",
    "verify_file",
]

MIRROR_ENV = "OWLEARN_MIRROR"
"""Environment variable with a mirror base URL (or local folder) used instead of the canonical hosts."""

_CHUNK = 1 << 20
_USER_AGENT = "owlearn (python urllib)"  # some hosts answer 403 to urllib's default agent


class DownloadError(OSError):
    """A file could not be downloaded (HTTP error, dropped connection, ...)."""


class OfflineError(DownloadError):
    """No connection could be made at all: the machine seems to be offline."""


class ChecksumError(ValueError):
    """A file's content does not match its published checksum."""


def resolve_mirror(mirror: str | os.PathLike | None = None) -> str | None:
    """The mirror to use: ``mirror`` if given, else ``$OWLEARN_MIRROR``, else ``None``.

    A local folder is turned into a ``file://`` URL, so a USB stick or network share with the files
    works as a mirror too.

    Examples
    --------
    >>> resolve_mirror("https://example.org/datasets/")
    'https://example.org/datasets/'
    """
    value = os.fspath(mirror) if mirror is not None else os.environ.get(MIRROR_ENV, "")
    if not value:
        return None
    if "://" not in value:
        return Path(value).expanduser().resolve().as_uri()
    return value


def mirror_url(url: str, mirror: str | None) -> str:
    """``url`` with its base replaced by ``mirror``; the file name is kept.

    Examples
    --------
    >>> mirror_url("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz", "http://10.0.0.2/data")
    'http://10.0.0.2/data/cifar-10-binary.tar.gz'
    """
    if not mirror:
        return url
    return f"{mirror.rstrip('/')}/{urlsplit(url).path.rsplit('/', 1)[-1]}"


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file's content.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x"
    >>> _ = p.write_bytes(b"abc")
    >>> file_digest(p)[:16]
    'ba7816bf8f01cfea'
    """
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, algorithm).hexdigest()


def _expected(sha256: str | None, md5: str | None) -> dict[str, str]:
    return {alg: digest.lower() for alg, digest in (("sha256", sha256), ("md5", md5)) if digest}


def verify_file(
    path: str | os.PathLike, *, sha256: str | None = None, md5: str | None = None, source: str | None = None
) -> str:
    """Check a file against its published checksum(s).

    Parameters
    ----------
    path
        The file.
    sha256, md5
        Expected hex digests; every one given is checked. Where a publisher lists only an MD5, pass
        that (it still catches corruption and truncation).
    source
        Where the file came from, for the error message (a URL).

    Returns
    -------
    str
        The algorithm(s) checked (``"sha256"``, ``"sha256+md5"``, ``"md5"``), or
        ``"no published checksum"`` (a warning is issued too).

    Raises
    ------
    ChecksumError
        A digest differs; the message names the file, the expected and the actual digest.

    Examples
    --------
    >>> verify_file("t10k-labels-idx1-ubyte.gz", sha256="f7ae60f9...")  # doctest: +SKIP
    'sha256'
    """
    expected = _expected(sha256, md5)
    if not expected:
        warnings.warn(f"{path}: no published checksum, the file is used unverified", stacklevel=2)
        return "no published checksum"
    for algorithm, digest in expected.items():
        actual = file_digest(path, algorithm)
        if actual != digest:
            origin = f" (from {source})" if source else ""
            raise ChecksumError(
                f"{path}{origin} does not match its published {algorithm.upper()}: expected {digest}, "
                f"got {actual}; the file is corrupt, incomplete or a different version"
            )
    return "+".join(expected)


def _progress_bar(label: str, total: int | None) -> tuple[Progress, TaskID]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        TimeRemainingColumn(), console=Console(stderr=True),
    )
    task = bar.add_task(label, total=total)
    return bar, task


def _stream_to(response: IO[bytes], tmp: Path, url: str, total: int | None, progress: bool) -> dict:
    """Copy the response body into ``tmp``; returns the running hashes. Raises on a short body."""
    hashes = {"sha256": hashlib.sha256(), "md5": hashlib.md5(usedforsecurity=False)}
    received = 0
    bar = task = None
    if progress:
        bar, task = _progress_bar(Path(urlsplit(url).path).name, total)
        bar.start()
    try:
        with open(tmp, "wb") as out:
            while True:
                try:
                    chunk = response.read(_CHUNK)
                except (OSError, ValueError, http.client.HTTPException) as err:  # reset, timeout, ...
                    raise DownloadError(
                        f"{url}: connection dropped after {received} bytes ({type(err).__name__}: {err})"
                    ) from None
                if not chunk:
                    break
                out.write(chunk)
                received += len(chunk)
                for h in hashes.values():
                    h.update(chunk)
                if bar is not None:
                    bar.update(task, completed=received)
            out.flush()
            os.fsync(out.fileno())
    finally:
        if bar is not None:
            bar.stop()
    # http.client returns b"" instead of raising when the server closes before Content-Length is
    # reached, so the length is checked here.
    if total is not None and received != total:
        raise DownloadError(
            f"{url}: connection dropped: received {received} of {total} bytes (Content-Length)"
        )
    return hashes


def _fetch(url: str, dest: Path, expected: dict[str, str], timeout: float, progress: bool) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        raise DownloadError(f"{url}: HTTP {err.code} {err.reason}") from None
    except urllib.error.URLError as err:
        if urlsplit(url).scheme == "file":
            raise DownloadError(f"{url}: {err.reason}") from None
        raise OfflineError(f"{url}: cannot connect ({err.reason})") from None
    except (TimeoutError, ConnectionError) as err:
        raise OfflineError(f"{url}: cannot connect ({type(err).__name__}: {err})") from None
    with response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        with atomic_path(dest) as tmp:
            hashes = _stream_to(response, tmp, url, total, progress)
            for algorithm, digest in expected.items():
                actual = hashes[algorithm].hexdigest()
                if actual != digest:
                    # Raising inside atomic_path removes the temporary file: nothing reaches the cache.
                    raise ChecksumError(
                        f"{dest.name} downloaded from {url} does not match its published "
                        f"{algorithm.upper()}: expected {digest}, got {actual}; nothing was saved"
                    )


def _remove_empty_dirs(path: Path, stop: Path) -> None:
    """Remove ``path`` and its parents up to (not including) ``stop`` while they are empty."""
    while path != stop and stop in path.parents:
        try:
            path.rmdir()
        except OSError:
            return
        path = path.parent


def download(
    url: str | Sequence[str],
    dest: str | os.PathLike,
    sha256: str | None = None,
    *,
    md5: str | None = None,
    timeout: float = 60.0,
    progress: bool = True,
    mirror: str | os.PathLike | None = None,
    manual_hint: str | None = None,
) -> Path:
    """Download a file to ``dest``, verifying its checksum before it appears there.

    The body is streamed into a temporary file next to ``dest`` and renamed onto ``dest`` only when it
    is complete and its digest matches. On any failure nothing is left behind.

    Parameters
    ----------
    url
        The canonical URL, or several tried in order until one works.
    dest
        Where the file goes.
    sha256, md5
        Published digests; every one given must match. With neither the file is saved unverified
        (with a warning).
    timeout
        Seconds to wait for the connection and for each read.
    progress
        Show a progress bar (rich, on stderr).
    mirror
        Base URL (or local folder) replacing the canonical host; defaults to ``$OWLEARN_MIRROR``.
    manual_hint
        What to tell the user when the machine is offline (which files to put where); by default the
        URL and ``dest``.

    Returns
    -------
    pathlib.Path
        ``dest``.

    Raises
    ------
    ChecksumError
        The downloaded content does not match (nothing saved).
    OfflineError
        No connection could be made to any URL; the message says where to put the file by hand.
    DownloadError
        HTTP error or dropped connection (nothing saved).

    Examples
    --------
    >>> download("https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz",
    ...          "data/mnist/t10k-labels-idx1-ubyte.gz",
    ...          "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6")  # doctest: +SKIP
    PosixPath('data/mnist/t10k-labels-idx1-ubyte.gz')
    """
    dest = Path(dest)
    urls = [url] if isinstance(url, str) else list(url)
    base = resolve_mirror(mirror)
    if base:
        urls = [mirror_url(urls[0], base)]
    expected = _expected(sha256, md5)
    if not expected:
        warnings.warn(f"{dest.name}: no published checksum, the download is saved unverified", stacklevel=2)

    existing = next(p for p in (dest.parent, *dest.parent.parents) if p.exists())
    failures: list[Exception] = []
    for candidate in urls:
        try:
            _fetch(candidate, dest, expected, timeout, progress)
            return dest
        except (DownloadError, ChecksumError) as err:
            failures.append(err)
    _remove_empty_dirs(dest.parent, existing)  # atomic_path created the folders for its temp file

    detail = "; ".join(str(e) for e in failures)
    if any(isinstance(e, ChecksumError) for e in failures):
        raise ChecksumError(detail)
    if all(isinstance(e, OfflineError) for e in failures):
        hint = manual_hint or f"download {urls[0]} by hand and save it as {dest}"
        via = "" if base else f", or set {MIRROR_ENV} to a mirror that has the files"
        raise OfflineError(f"this machine seems to be offline ({detail}). To proceed, {hint}{via}")
    raise DownloadError(detail)
