"""The registry, load_dataset / download_dataset / dataset_info, with small generated datasets."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from owlearn.data import (
    ChecksumError,
    DatasetFormatError,
    DatasetNotFoundError,
    OfflineError,
    dataset_info,
    default_data_dir,
    download_dataset,
    list_datasets,
    load_dataset,
    sources,
)
from owlearn.data.sources import RemoteFile, get_dataset_spec, register_dataset

MNIST_FILES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


@pytest.fixture
def tiny(tmp_path, gen, registry, http_server):
    """A registered MNIST-format dataset 'tiny' whose canonical host is the local HTTP server."""
    published = tmp_path / "published"
    arrays = gen.make_mnist_files(published, n_train=12, n_test=7)
    files = []
    for name in MNIST_FILES:
        url = http_server.add(f"/pub/{name}", (published / name).read_bytes())
        files.append(RemoteFile(name, (url,), sha256=gen.sha256(published / name)))
    spec = dataclasses.replace(
        get_dataset_spec("mnist"), name="tiny", aliases=("tiny-alias",), files=tuple(files),
        split_sizes={"train": 12, "test": 7},
    )
    register_dataset(spec)
    return spec, published, arrays


def _place(published, folder, names=MNIST_FILES):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(published / name, folder / name)


def test_registry_is_complete():
    assert list_datasets() == ["mnist", "fashion-mnist", "kmnist", "cifar10", "cifar100", "usps", "digits"]
    for name in list_datasets():
        spec = get_dataset_spec(name)
        assert set(spec.split_files) == set(spec.split_sizes) == {"train", "test"}
        for split_files in spec.split_files.values():
            assert all(spec.file(f) for f in split_files)
        if spec.class_names is not None:
            assert len(spec.class_names) == spec.num_classes
        for remote in spec.files:
            assert remote.urls and all(u.endswith("/" + remote.name) for u in remote.urls)
            assert remote.checksum_source
            if remote.sha256:
                assert re.fullmatch(r"[0-9a-f]{64}", remote.sha256)
                assert all(re.fullmatch(r"[0-9a-f]{64}", s) for s in remote.also_sha256)
            else:
                assert re.fullmatch(r"[0-9a-f]{32}", remote.md5 or "")
    assert {f.checksum_kind for f in get_dataset_spec("usps").files} == {"md5"}
    hiragana = ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")
    assert get_dataset_spec("kmnist").class_names == hiragana
    assert get_dataset_spec("fashion-mnist").class_names[-1] == "Ankle boot"
    assert get_dataset_spec("Fashion_MNIST") is get_dataset_spec("fashion-mnist")


def test_default_data_dir(monkeypatch, tmp_path):
    assert default_data_dir() == tmp_path / "owlearn-data"  # from OWLEARN_DATA (conftest)
    monkeypatch.delenv("OWLEARN_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "xdg" / "owlearn"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_data_dir() == Path.home() / ".cache" / "owlearn"


def test_load_from_the_data_dir(tiny, isolated_env):
    spec, published, arrays = tiny
    _place(published, isolated_env / "tiny")
    ds = load_dataset("tiny", "test")
    assert ds.name == "tiny/test" and len(ds) == 7 and ds.shape == (1, 28, 28)
    assert torch.equal(ds.images[:, 0], torch.from_numpy(arrays["t10k"][0]))
    assert ds.meta["files"][0] == str(isolated_env / "tiny" / "t10k-images-idx3-ubyte.gz")
    assert len(load_dataset("tiny-alias", "train")) == 12
    both = load_dataset("tiny", "all")
    assert len(both) == 19 and both.name == "tiny/all" and len(both.meta["files"]) == 4


def test_data_dir_argument_beats_environment(tiny, tmp_path):
    _, published, _ = tiny
    _place(published, tmp_path / "elsewhere" / "tiny")
    assert len(load_dataset("tiny", "test", data_dir=tmp_path / "elsewhere")) == 7
    with pytest.raises(DatasetNotFoundError):
        load_dataset("tiny", "test")


def test_system_dir_is_searched(tiny, tmp_path):
    spec, published, _ = tiny
    register_dataset(dataclasses.replace(spec, system_dirs=(str(tmp_path / "usr-share"),)), replace=True)
    _place(published, tmp_path / "usr-share")
    assert len(load_dataset("tiny", "test")) == 7
    assert dataset_info("tiny")["locations"] == [str(tmp_path / "usr-share")]


def test_missing_files_say_what_to_do(tiny, isolated_env):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("tiny", "test")
    message = str(info.value)
    assert "owlearn data download tiny" in message
    assert str(isolated_env / "tiny") in message and "t10k-labels-idx1-ubyte.gz" in message
    assert "\n" not in message


def test_corrupt_file_is_refused(tiny, isolated_env):
    _, published, _ = tiny
    _place(published, isolated_env / "tiny")
    (isolated_env / "tiny" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"garbage")
    with pytest.raises(ChecksumError, match=r"t10k-labels-idx1-ubyte.gz does not match the published "
                                            r"SHA-256.*owlearn data download tiny"):
        load_dataset("tiny", "test")


def test_download_true_fetches_verifies_and_caches(tiny, isolated_env, http_server, monkeypatch):
    ds = load_dataset("tiny", "test", download=True)
    assert len(ds) == 7
    assert sorted(http_server.requests) == [f"/pub/{n}" for n in MNIST_FILES[2:]]
    assert sorted(p.name for p in (isolated_env / "tiny").iterdir()) == MNIST_FILES[2:]

    hashed = []
    real = sources.file_digest
    monkeypatch.setattr(sources, "file_digest", lambda p, a="sha256": hashed.append(p) or real(p, a))
    load_dataset("tiny", "test", download=True)
    assert len(http_server.requests) == 2 and hashed == []  # no new download, no re-hash
    os.utime(isolated_env / "tiny" / "t10k-images-idx3-ubyte.gz", ns=(1, 1))  # the file changed
    load_dataset("tiny", "test")
    assert [p.name for p in hashed] == ["t10k-images-idx3-ubyte.gz"]


def test_download_replaces_a_corrupt_copy(tiny, isolated_env):
    _, published, _ = tiny
    _place(published, isolated_env / "tiny")
    (isolated_env / "tiny" / "t10k-images-idx3-ubyte.gz").write_bytes(b"broken")
    paths = download_dataset("tiny", splits=["test"], progress=False)
    assert [p.name for p in paths] == MNIST_FILES[2:]
    assert len(load_dataset("tiny", "test")) == 7


def test_download_with_mirror_env(tiny, isolated_env, http_server, monkeypatch):
    spec, published, _ = tiny
    for name in MNIST_FILES:
        http_server.add(f"/mirror/{name}", (published / name).read_bytes())
    monkeypatch.setenv("OWLEARN_MIRROR", http_server.base + "/mirror")
    paths = download_dataset("tiny", progress=False)
    assert len(paths) == 4 and all(r.startswith("/mirror/") for r in http_server.requests)
    assert dataset_info("tiny")["found"]


def test_download_offline_lists_every_file_and_the_folder(tiny, isolated_env, closed_port):
    spec, _, _ = tiny
    dead = f"http://127.0.0.1:{closed_port}/"
    offline = tuple(dataclasses.replace(f, urls=(dead + f.name,)) for f in spec.files)
    register_dataset(dataclasses.replace(spec, files=offline), replace=True)
    with pytest.raises(OfflineError) as info:
        download_dataset("tiny", progress=False, timeout=5)
    message = str(info.value)
    assert "offline" in message and f"{isolated_env / 'tiny'}/" in message
    assert all(name in message for name in MNIST_FILES)
    assert not (isolated_env / "tiny").exists()


def test_download_with_wrong_published_hash_saves_nothing(tiny, isolated_env):
    spec, _, _ = tiny
    wrong = tuple(dataclasses.replace(f, sha256="0" * 64) for f in spec.files)
    register_dataset(dataclasses.replace(spec, files=wrong), replace=True)
    with pytest.raises(ChecksumError, match="expected 0000"):
        load_dataset("tiny", "test", download=True)
    assert not (isolated_env / "tiny").exists()


def test_split_size_is_checked(tiny, isolated_env):
    spec, published, _ = tiny
    register_dataset(dataclasses.replace(spec, split_sizes={"train": 12, "test": 8}), replace=True)
    _place(published, isolated_env / "tiny")
    with pytest.raises(DatasetFormatError, match="7 images, but tiny test has 8"):
        load_dataset("tiny", "test")


def test_no_published_checksum_warns(tiny, isolated_env):
    spec, published, _ = tiny
    bare = tuple(dataclasses.replace(f, sha256=None) for f in spec.files)
    register_dataset(dataclasses.replace(spec, files=bare), replace=True)
    _place(published, isolated_env / "tiny")
    with pytest.warns(UserWarning, match="no published checksum"):
        assert len(load_dataset("tiny", "test")) == 7


def test_md5_verified_usps(registry, tmp_path, gen, isolated_env):
    folder = isolated_env / "usps"
    gen.write_usps(folder / "usps.bz2", np.zeros((3, 256)), [1, 2, 3])
    gen.write_usps(folder / "usps.t.bz2", np.zeros((2, 256)), [4, 5])
    md5 = {n: hashlib.md5((folder / n).read_bytes()).hexdigest() for n in ("usps.bz2", "usps.t.bz2")}
    spec = get_dataset_spec("usps")
    register_dataset(dataclasses.replace(
        spec, split_sizes={"train": 3, "test": 2},
        files=tuple(dataclasses.replace(f, md5=md5[f.name]) for f in spec.files),
    ), replace=True)
    ds = load_dataset("usps", "test")
    assert ds.labels.tolist() == [3, 4] and ds.shape == (1, 16, 16)
    (folder / "usps.t.bz2").write_bytes(b"BZh9 corrupted")
    with pytest.raises(ChecksumError, match="published MD5 of usps.t.bz2"):
        load_dataset("usps", "test")


def test_cifar100_options_through_the_registry(registry, gen, isolated_env):
    gen.make_cifar100_archive(isolated_env / "cifar100" / "cifar-100-binary.tar.gz", n_train=5, n_test=3)
    spec = get_dataset_spec("cifar100")
    archive = isolated_env / "cifar100" / "cifar-100-binary.tar.gz"
    register_dataset(dataclasses.replace(
        spec, split_sizes={"train": 5, "test": 3},
        files=(dataclasses.replace(spec.files[0], sha256=gen.sha256(archive)),),
    ), replace=True)
    assert load_dataset("cifar100", "test").num_classes == 100
    coarse = load_dataset("cifar100", "test", label="coarse")
    assert coarse.num_classes == 20 and coarse.meta["options"] == {"label": "coarse"}
    assert len(load_dataset("cifar100", "all")) == 8


def test_bad_names_splits_and_options():
    with pytest.raises(ValueError, match="unknown dataset 'mnist2'.*fashion-mnist.*folder:PATH"):
        load_dataset("mnist2")
    with pytest.raises(ValueError, match="mnist has splits train, test; got 'valid'"):
        load_dataset("mnist", "valid")
    with pytest.raises(TypeError, match=r"unknown option\(s\) for mnist: size \(allowed: none\)"):
        load_dataset("mnist", size=3)
    with pytest.raises(ValueError, match="nothing to download"):
        download_dataset("folder:/tmp")


def test_dataset_info(tiny, isolated_env):
    info = dataset_info("mnist")
    assert info["splits"] == {"train": 60000, "test": 10000} and info["shape"] == (1, 28, 28)
    assert info["classes"] == [str(d) for d in range(10)] and not info["found"]
    assert info["data_dir"] == str(isolated_env / "mnist")
    assert [f["name"] for f in info["files"]] == MNIST_FILES
    assert dataset_info("cifar10")["classes"] is None  # read from the archive
    assert dataset_info("digits")["builtin"] and download_dataset("digits") == []

    _, published, _ = tiny
    _place(published, isolated_env / "tiny", MNIST_FILES[2:])
    info = dataset_info("tiny")
    assert not info["found"] and info["locations"] == [str(isolated_env / "tiny")]
    assert [f["path"] is not None for f in info["files"]] == [False, False, True, True]


def test_folder_info(tmp_path, gen):
    gen.make_image_folder(tmp_path / "p", {"a": [np.zeros((2, 2))] * 2, "b": [np.zeros((2, 2))]})
    info = dataset_info(f"folder:{tmp_path / 'p'}")
    assert info["splits"] == {"all": 3} and info["classes"] == ["a", "b"]


def test_folder_info_of_unlabeled_and_empty_folders(tmp_path, gen):
    gen.make_image_folder(tmp_path / "p", {"a": [np.zeros((2, 2))] * 3})
    (tmp_path / "p" / "a").rename(tmp_path / "flat")
    info = dataset_info(f"folder:{tmp_path / 'flat'}")
    assert info["splits"] == {"all": 3} and info["classes"] == []
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetFormatError, match="no images and no class sub-folders"):
        dataset_info(f"folder:{tmp_path / 'empty'}")
