"""IDX parser (MNIST, Fashion-MNIST, KMNIST) on generated valid, corrupt and truncated files."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from owlearn.data.formats import DatasetFormatError, load_idx, read_idx_images, read_idx_labels

DIGITS = [str(d) for d in range(10)]


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_round_trip_gzip_and_raw(tmp_path, gen, suffix):
    images = gen.random_images(5, (28, 28))
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    ipath = gen.write_idx(tmp_path / f"x-images-idx3-ubyte{suffix}", images)
    lpath = gen.write_idx(tmp_path / f"x-labels-idx1-ubyte{suffix}", labels)

    np.testing.assert_array_equal(read_idx_images(ipath), images)
    assert read_idx_labels(lpath).dtype == np.int64
    ds = load_idx(ipath, lpath, DIGITS, "x/train")
    assert ds.images.shape == (5, 1, 28, 28) and ds.images.dtype == torch.uint8
    assert ds.labels.tolist() == [3, 1, 4, 1, 5]
    assert ds.class_names == DIGITS and ds.name == "x/train"
    assert ds.images.is_contiguous() and ds.images.numpy().flags.writeable


def test_non_square_images(tmp_path, gen):
    images = gen.random_images(2, (3, 5))
    assert read_idx_images(gen.write_idx(tmp_path / "a.gz", images)).shape == (2, 3, 5)


def test_error_is_a_value_error(tmp_path, gen):
    path = gen.write_idx(tmp_path / "a-images.gz", np.zeros(3, dtype=np.uint8))
    with pytest.raises(ValueError):
        read_idx_images(path)


def test_labels_file_given_as_images(tmp_path, gen):
    path = gen.write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(3, dtype=np.uint8))
    with pytest.raises(DatasetFormatError, match=r"t10k-labels-idx1-ubyte.gz: wrong magic number 2049.*swap"):
        read_idx_images(path)


def test_bad_magic(tmp_path, gen):
    data = gen.idx_bytes(np.zeros((2, 4, 4)), magic=0x0D0A0D0A)
    path = gen.write_file(tmp_path / "bad-images.gz", data)
    with pytest.raises(DatasetFormatError, match="bad-images.gz: wrong magic number .*expected 2051"):
        read_idx_images(path)


def test_gzip_content_with_raw_name(tmp_path, gen):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(gzip.compress(gen.idx_bytes(np.zeros((2, 4, 4)))))
    with pytest.raises(DatasetFormatError, match=r"name the file \*\.gz"):
        read_idx_images(path)


def test_wrong_dimensions(tmp_path, gen):
    # A three-dimensional header whose image side is 0.
    data = (2051).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (2, 0, 28))
    path = gen.write_file(tmp_path / "zero-images.gz", data)
    with pytest.raises(DatasetFormatError, match=r"zero-images.gz: invalid IDX dimensions \(2, 0, 28\)"):
        read_idx_images(path)


def test_truncated_data(tmp_path, gen):
    data = gen.idx_bytes(gen.random_images(4, (28, 28)))[:-100]
    path = gen.write_file(tmp_path / "short-images.gz", data)
    with pytest.raises(DatasetFormatError, match=r"short-images.gz: truncated: the header declares 4x28x28"):
        read_idx_images(path)


def test_truncated_header(tmp_path, gen):
    path = gen.write_file(tmp_path / "hdr-images.gz", (2051).to_bytes(4, "big") + b"\0\0\0\2")
    with pytest.raises(DatasetFormatError, match="hdr-images.gz: truncated IDX header"):
        read_idx_images(path)


def test_empty_file(tmp_path, gen):
    path = gen.write_file(tmp_path / "empty-labels", b"")
    with pytest.raises(DatasetFormatError, match="empty-labels: truncated IDX file"):
        read_idx_labels(path)


def test_trailing_bytes(tmp_path, gen):
    data = gen.idx_bytes(np.arange(6, dtype=np.uint8)) + b"\0\0\0"
    path = gen.write_file(tmp_path / "long-labels.gz", data)
    with pytest.raises(DatasetFormatError, match="long-labels.gz: 3 trailing bytes"):
        read_idx_labels(path)


def test_not_gzip(tmp_path, gen):
    path = tmp_path / "plain-images.gz"
    path.write_bytes(gen.idx_bytes(np.zeros((1, 2, 2))))
    with pytest.raises(DatasetFormatError, match="plain-images.gz: not a gzip file"):
        read_idx_images(path)


def test_truncated_gzip(tmp_path, gen):
    path = tmp_path / "cut-images.gz"
    path.write_bytes(gzip.compress(gen.idx_bytes(gen.random_images(3, (28, 28))))[:-50])
    with pytest.raises(DatasetFormatError, match="cut-images.gz: gzip data is truncated"):
        read_idx_images(path)


def test_corrupt_gzip(tmp_path, gen):
    data = bytearray(gzip.compress(gen.idx_bytes(gen.random_images(3, (28, 28)))))
    data[-8:-4] = bytes(b ^ 0xFF for b in data[-8:-4])  # break the CRC-32 in the trailer
    path = tmp_path / "crc-images.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetFormatError, match="crc-images.gz: corrupt gzip data"):
        read_idx_images(path)


def test_count_mismatch(tmp_path, gen):
    ipath = gen.write_idx(tmp_path / "i.gz", gen.random_images(5, (28, 28)))
    lpath = gen.write_idx(tmp_path / "l.gz", np.zeros(4, dtype=np.uint8))
    with pytest.raises(DatasetFormatError, match=r"i.gz holds 5 images but .*l.gz holds 4 labels"):
        load_idx(ipath, lpath, DIGITS)


def test_label_out_of_range(tmp_path, gen):
    ipath = gen.write_idx(tmp_path / "i.gz", gen.random_images(3, (28, 28)))
    lpath = gen.write_idx(tmp_path / "l.gz", np.array([0, 10, 2], dtype=np.uint8))
    with pytest.raises(DatasetFormatError, match=r"l.gz: label 10 at position 1 is out of range \[0, 10\)"):
        load_idx(ipath, lpath, DIGITS)
