"""CIFAR-10/100 binary archives, read in place from generated .tar.gz files."""

from __future__ import annotations

import tarfile

import numpy as np
import pytest

from owlearn.data.formats import (
    DatasetFormatError,
    load_cifar10_archive,
    load_cifar100_archive,
    parse_cifar_records,
)


def test_cifar10_train_and_test(tmp_path, gen):
    arrays = gen.make_cifar10_archive(tmp_path / "cifar-10-binary.tar.gz", per_batch=3, n_test=4)
    train = load_cifar10_archive(tmp_path / "cifar-10-binary.tar.gz", "train", "cifar10/train")
    test = load_cifar10_archive(tmp_path / "cifar-10-binary.tar.gz", "test")

    batches = [arrays[f"data_batch_{i}.bin"] for i in range(1, 6)]  # the five batches, in order
    np.testing.assert_array_equal(train.images.numpy(), np.concatenate([b[0] for b in batches]))
    np.testing.assert_array_equal(train.labels.numpy(), np.concatenate([b[1] for b in batches]))
    assert train.images.shape == (15, 3, 32, 32) and train.name == "cifar10/train"
    np.testing.assert_array_equal(test.images.numpy(), arrays["test_batch.bin"][0])
    assert test.class_names == gen.CIFAR10_NAMES


def test_record_layout_is_rgb_planes():
    # One record: label 7, then a red plane of 1s, a green plane of 2s and a blue plane of 3s.
    record = bytes([7]) + bytes([1]) * 1024 + bytes([2]) * 1024 + bytes([3]) * 1024
    images, labels = parse_cifar_records(record, 1, 0, 10, "batch")
    assert labels.tolist() == [7]
    assert [int(images[0, c].min()) for c in range(3)] == [1, 2, 3]


@pytest.mark.parametrize("label, n_classes, first", [("fine", 100, "fine0"), ("coarse", 20, "coarse0")])
def test_cifar100_fine_and_coarse(tmp_path, gen, label, n_classes, first):
    arrays = gen.make_cifar100_archive(tmp_path / "c100.tar.gz", n_train=5, n_test=3)
    ds = load_cifar100_archive(tmp_path / "c100.tar.gz", "test", label=label)
    images, coarse, fine = arrays["test"]
    np.testing.assert_array_equal(ds.images.numpy(), images)
    np.testing.assert_array_equal(ds.labels.numpy(), fine if label == "fine" else coarse)
    assert ds.num_classes == n_classes and ds.class_names[0] == first
    assert ds.meta["label"] == label


def test_cifar100_defaults_to_fine(tmp_path, gen):
    gen.make_cifar100_archive(tmp_path / "c100.tar.gz")
    assert load_cifar100_archive(tmp_path / "c100.tar.gz").num_classes == 100


def test_truncated_batch(tmp_path, gen):
    good = gen.cifar_records(np.zeros((2, 3, 32, 32)), [1, 2])
    gen.make_cifar10_archive(tmp_path / "c.tar.gz", **{"test_batch.bin": good[:-10]})
    with pytest.raises(DatasetFormatError, match=r"c.tar.gz:test_batch.bin: 6136 bytes is not a whole"):
        load_cifar10_archive(tmp_path / "c.tar.gz", "test")


def test_trailing_bytes_in_batch(tmp_path, gen):
    good = gen.cifar_records(np.zeros((2, 3, 32, 32)), [1, 2])
    gen.make_cifar10_archive(tmp_path / "c.tar.gz", **{"data_batch_3.bin": good + b"\0" * 5})
    with pytest.raises(DatasetFormatError, match=r"data_batch_3.bin: .*5 bytes left over"):
        load_cifar10_archive(tmp_path / "c.tar.gz", "train")


def test_label_out_of_range(tmp_path, gen):
    bad = gen.cifar_records(np.zeros((2, 3, 32, 32)), [1, 12])
    gen.make_cifar10_archive(tmp_path / "c.tar.gz", **{"test_batch.bin": bad})
    with pytest.raises(DatasetFormatError, match=r"test_batch.bin: label 12 at position 1 is out of range"):
        load_cifar10_archive(tmp_path / "c.tar.gz", "test")


def test_wrong_number_of_class_names(tmp_path, gen):
    gen.make_cifar10_archive(tmp_path / "c.tar.gz", **{"batches.meta.txt": b"cat\ndog\n"})
    with pytest.raises(DatasetFormatError, match="batches.meta.txt: expected 10 class names, found 2"):
        load_cifar10_archive(tmp_path / "c.tar.gz", "test")


def test_missing_member(tmp_path, gen):
    gen.write_tar(tmp_path / "c.tar.gz", {"cifar-10-batches-bin/batches.meta.txt": b"a\n" * 10})
    with pytest.raises(DatasetFormatError, match="c.tar.gz: missing member.*test_batch.bin"):
        load_cifar10_archive(tmp_path / "c.tar.gz", "test")


@pytest.mark.parametrize("name", ["../test_batch.bin", "/etc/test_batch.bin", "a/../../x"])
def test_refuses_unsafe_paths(tmp_path, gen, name):
    gen.write_tar(tmp_path / "c.tar.gz", {name: b"x"})
    with pytest.raises(DatasetFormatError, match="refusing tar member with an unsafe path"):
        load_cifar10_archive(tmp_path / "c.tar.gz", "test")


def test_refuses_links(tmp_path, gen):
    link = tarfile.TarInfo("cifar-10-batches-bin/test_batch.bin")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    gen.write_tar(tmp_path / "c.tar.gz", {}, extra=[link])
    with pytest.raises(DatasetFormatError, match="not a regular file or folder"):
        load_cifar10_archive(tmp_path / "c.tar.gz", "test")


def test_truncated_archive(tmp_path, gen):
    gen.make_cifar10_archive(tmp_path / "c.tar.gz")
    data = (tmp_path / "c.tar.gz").read_bytes()
    (tmp_path / "c.tar.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetFormatError, match="c.tar.gz: (truncated archive|not a valid .tar.gz)"):
        load_cifar10_archive(tmp_path / "c.tar.gz", "train")


def test_not_an_archive(tmp_path):
    (tmp_path / "c.tar.gz").write_bytes(b"this is not a tar.gz file at all")
    with pytest.raises(DatasetFormatError, match="c.tar.gz: not a valid .tar.gz archive"):
        load_cifar10_archive(tmp_path / "c.tar.gz", "test")


def test_bad_split_and_label(tmp_path, gen):
    gen.make_cifar100_archive(tmp_path / "c.tar.gz")
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        load_cifar100_archive(tmp_path / "c.tar.gz", "valid")
    with pytest.raises(ValueError, match="label must be 'fine' or 'coarse'"):
        load_cifar100_archive(tmp_path / "c.tar.gz", "test", label="super")
