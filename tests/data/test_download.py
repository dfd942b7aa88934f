"""Downloads against a real HTTP server on 127.0.0.1: checksums, dropped connections, offline, mirrors."""

from __future__ import annotations

import hashlib

import pytest

from owlearn.data.download import (
    ChecksumError,
    DownloadError,
    OfflineError,
    download,
    mirror_url,
    resolve_mirror,
    verify_file,
)

BODY = bytes(range(256)) * 4000  # ~1 MB: more than one read chunk
SHA = hashlib.sha256(BODY).hexdigest()
MD5 = hashlib.md5(BODY).hexdigest()


def _files(folder):
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


def test_success_verifies_sha256(tmp_path, http_server):
    url = http_server.add("/data/file.bin", BODY)
    dest = tmp_path / "cache" / "ds" / "file.bin"
    assert download(url, dest, SHA, progress=False) == dest
    assert dest.read_bytes() == BODY
    assert _files(dest.parent) == ["file.bin"]  # no temporary file left next to it


def test_success_with_md5_only_and_progress_bar(tmp_path, http_server, capsys):
    url = http_server.add("/file.bin", BODY)
    download(url, tmp_path / "file.bin", md5=MD5, progress=True)
    assert (tmp_path / "file.bin").read_bytes() == BODY
    assert "file.bin" in capsys.readouterr().err  # the bar goes to stderr


def test_wrong_hash_leaves_nothing(tmp_path, http_server):
    url = http_server.add("/file.bin", BODY[:-1] + b"X")
    dest = tmp_path / "cache" / "ds" / "file.bin"
    with pytest.raises(ChecksumError) as info:
        download(url, dest, SHA, progress=False)
    message = str(info.value)
    assert url in message and "file.bin" in message and SHA in message
    assert hashlib.sha256(BODY[:-1] + b"X").hexdigest() in message
    assert not dest.exists() and _files(tmp_path) == []  # not even the folders it created


def test_failed_download_keeps_the_previous_file(tmp_path, http_server):
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"old")
    url = http_server.add("/file.bin", b"new but wrong")
    with pytest.raises(ChecksumError):
        download(url, dest, SHA, progress=False)
    assert dest.read_bytes() == b"old" and _files(tmp_path) == ["file.bin"]


def test_dropped_connection(tmp_path, http_server):
    url = http_server.add("/file.bin", BODY, drop=True)
    dest = tmp_path / "cache" / "file.bin"
    with pytest.raises(DownloadError, match=r"connection dropped.* of 1024000 bytes") as info:
        download(url, dest, SHA, progress=False)
    assert not isinstance(info.value, OfflineError)
    assert _files(tmp_path) == []


def test_http_error_is_not_offline(tmp_path, http_server):
    with pytest.raises(DownloadError, match="HTTP 404") as info:
        download(http_server.base + "/missing.bin", tmp_path / "missing.bin", SHA, progress=False)
    assert not isinstance(info.value, OfflineError)


def test_offline_says_where_to_put_the_file(tmp_path, closed_port):
    dest = tmp_path / "cache" / "mnist" / "file.bin"
    with pytest.raises(OfflineError) as info:
        download(f"http://127.0.0.1:{closed_port}/file.bin", dest, SHA, progress=False, timeout=5)
    message = str(info.value)
    assert "offline" in message and str(dest) in message and "OWLEARN_MIRROR" in message
    assert _files(tmp_path) == []


def test_offline_uses_the_callers_hint(tmp_path, closed_port):
    with pytest.raises(OfflineError, match="put it in /somewhere"):
        download(f"http://127.0.0.1:{closed_port}/f", tmp_path / "f", SHA, progress=False,
                 manual_hint="put it in /somewhere")


def test_falls_back_to_the_next_url(tmp_path, http_server, closed_port):
    good = http_server.add("/b/file.bin", BODY)
    urls = [f"http://127.0.0.1:{closed_port}/a/file.bin", http_server.base + "/nothing/file.bin", good]
    download(urls, tmp_path / "file.bin", SHA, progress=False)
    assert (tmp_path / "file.bin").read_bytes() == BODY


def test_mirror_from_environment(tmp_path, http_server, closed_port, monkeypatch):
    http_server.add("/mirror/file.bin", BODY)
    monkeypatch.setenv("OWLEARN_MIRROR", http_server.base + "/mirror/")
    canonical = f"http://127.0.0.1:{closed_port}/original/path/file.bin"  # unreachable
    download(canonical, tmp_path / "file.bin", SHA, progress=False)
    assert http_server.requests == ["/mirror/file.bin"]


def test_mirror_argument_wins_over_environment(tmp_path, http_server, closed_port, monkeypatch):
    http_server.add("/arg/file.bin", BODY)
    monkeypatch.setenv("OWLEARN_MIRROR", f"http://127.0.0.1:{closed_port}/env")
    download("https://example.invalid/x/file.bin", tmp_path / "f", SHA, progress=False,
             mirror=http_server.base + "/arg")
    assert http_server.requests == ["/arg/file.bin"]


def test_local_folder_as_mirror(tmp_path):
    (tmp_path / "usb").mkdir()
    (tmp_path / "usb" / "file.bin").write_bytes(BODY)
    download("https://example.invalid/x/file.bin", tmp_path / "out" / "file.bin", SHA, progress=False,
             mirror=tmp_path / "usb")
    assert (tmp_path / "out" / "file.bin").read_bytes() == BODY
    with pytest.raises(DownloadError):
        download("https://example.invalid/x/other.bin", tmp_path / "out" / "other.bin", SHA, progress=False,
                 mirror=tmp_path / "usb")


def test_no_checksum_warns(tmp_path, http_server):
    url = http_server.add("/file.bin", BODY)
    with pytest.warns(UserWarning, match="no published checksum"):
        download(url, tmp_path / "file.bin", progress=False)
    with pytest.warns(UserWarning, match="no published checksum"):
        assert verify_file(tmp_path / "file.bin") == "no published checksum"


def test_verify_file(tmp_path):
    (tmp_path / "f").write_bytes(BODY)
    assert verify_file(tmp_path / "f", sha256=SHA.upper(), md5=MD5) == "sha256+md5"
    with pytest.raises(ChecksumError, match=f"expected {'0' * 32}, got {MD5}"):
        verify_file(tmp_path / "f", md5="0" * 32, source="http://x/f")


def test_mirror_url_and_resolution(monkeypatch, tmp_path):
    assert mirror_url("https://a.org/x/y/f.tar.gz", "http://m/base/") == "http://m/base/f.tar.gz"
    assert mirror_url("https://a.org/x/f", None) == "https://a.org/x/f"
    assert resolve_mirror(None) is None
    monkeypatch.setenv("OWLEARN_MIRROR", "http://env/")
    assert resolve_mirror(None) == "http://env/" and resolve_mirror("http://arg") == "http://arg"
    assert resolve_mirror(tmp_path) == tmp_path.resolve().as_uri()
