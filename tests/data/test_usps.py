"""USPS in LIBSVM format (bz2), as published on the LIBSVM data page."""

from __future__ import annotations

import bz2

import numpy as np
import pytest

from owlearn.data.formats import DatasetFormatError, load_usps, read_libsvm_images


def _values(n: int, seed: int = 0) -> np.ndarray:
    return np.round(np.random.default_rng(seed).uniform(-1, 1, size=(n, 256)), 6)


def test_dense_file(tmp_path, gen):
    values = _values(4)
    values[0, :3] = [-1.0, 1.0, 0.0]
    path = gen.write_usps(tmp_path / "usps.bz2", values, [1, 10, 5, 1])
    ds = load_usps(path, "usps/train")
    assert ds.images.shape == (4, 1, 16, 16) and ds.name == "usps/train"
    assert ds.labels.tolist() == [0, 9, 4, 0]  # labels 1..10 are the digits 0..9
    assert ds.class_names == [str(d) for d in range(10)]
    assert ds.images[0, 0, 0, :3].tolist() == [0, 255, 128]  # (v + 1) / 2 * 255, rounded
    expected = np.rint((values + 1) / 2 * 255).astype(np.uint8).reshape(4, 16, 16)
    np.testing.assert_array_equal(ds.images[:, 0].numpy(), expected)  # row-major 16x16


def test_sparse_lines_mean_zero(tmp_path, gen):
    values = np.zeros((2, 256))
    values[0, 5] = 1.0
    path = gen.write_usps(tmp_path / "usps.t.bz2", values, [3, 4], sparse=True)
    assert "6:1.000000" in bz2.decompress(path.read_bytes()).decode()  # the file really is sparse
    images, labels = read_libsvm_images(path)
    assert images[0].reshape(-1)[5] == 255
    assert (np.delete(images[0].reshape(-1), 5) == 128).all() and (images[1] == 128).all()
    assert labels.tolist() == [2, 3]


def test_float_labels_and_comments(tmp_path, gen):
    path = gen.write_file(tmp_path / "u.bz2", b"2.0 1:0.5  # a comment\n\n1 256:-1\n")
    images, labels = read_libsvm_images(path)
    assert labels.tolist() == [1, 0] and images.shape == (2, 16, 16)


@pytest.mark.parametrize("label", ["0", "11", "1.5", "x"])
def test_bad_label(tmp_path, gen, label):
    path = gen.write_file(tmp_path / "u.bz2", f"1 1:0\n{label} 1:0.5\n".encode())
    with pytest.raises(DatasetFormatError, match=r"u.bz2, line 2: label"):
        read_libsvm_images(path)


@pytest.mark.parametrize(
    "features, message",
    [
        ("257:0.1", "indices must be integers in"),
        ("0:0.1", "indices must be integers in"),
        ("3:0.1 2:0.2", "strictly increasing"),
        ("1:0.1 1:0.2", "strictly increasing"),
        ("1=0.1", "index:value"),
        ("1:0.1:3", "index:value"),
        ("1:abc", "index:value"),
        ("1:1.5", r"must lie in \[-1, 1\]"),
        ("1:nan", "finite"),
    ],
)
def test_bad_features(tmp_path, gen, features, message):
    path = gen.write_file(tmp_path / "u.bz2", f"1 {features}\n".encode())
    with pytest.raises(DatasetFormatError, match=f"u.bz2, line 1: .*{message}"):
        read_libsvm_images(path)


def test_not_bz2(tmp_path):
    (tmp_path / "usps.bz2").write_bytes(b"1 1:0.5\n")
    with pytest.raises(DatasetFormatError, match="usps.bz2: not a bzip2 file"):
        read_libsvm_images(tmp_path / "usps.bz2")


def test_truncated_bz2(tmp_path, gen):
    data = bz2.compress(gen.usps_lines(_values(20), [1] * 20).encode())
    (tmp_path / "usps.bz2").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetFormatError, match="usps.bz2: bzip2 data is truncated"):
        read_libsvm_images(tmp_path / "usps.bz2")


def test_corrupt_bz2(tmp_path, gen):
    data = bytearray(bz2.compress(gen.usps_lines(_values(20), [1] * 20).encode()))
    data[40:60] = bytes(20)
    (tmp_path / "usps.bz2").write_bytes(bytes(data))
    with pytest.raises(DatasetFormatError, match="usps.bz2: (corrupt|bzip2 data is truncated)"):
        read_libsvm_images(tmp_path / "usps.bz2")


def test_empty_file(tmp_path, gen):
    path = gen.write_file(tmp_path / "usps.bz2", b"\n")
    with pytest.raises(DatasetFormatError, match="usps.bz2: no samples"):
        read_libsvm_images(path)
