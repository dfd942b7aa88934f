"""scikit-learn digits: offline, with a deterministic stratified split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from owlearn.data import load_dataset
from owlearn.data.sources import digits_split


@pytest.fixture(scope="module")
def splits():
    return {s: load_dataset("digits", s) for s in ("train", "test", "all")}


def test_sizes_and_shape(splits):
    assert (len(splits["train"]), len(splits["test"])) == (1438, 359)
    assert splits["train"].shape == (1, 8, 8) and splits["train"].images.dtype == torch.uint8
    assert int(splits["train"].images.max()) == 255  # 0..16 scaled to 0..255
    assert splits["test"].class_names == [str(d) for d in range(10)]
    assert splits["test"].name == "digits/test"


def test_split_is_reproducible_and_partitions(splits):
    again = load_dataset("digits", "test")
    assert torch.equal(again.images, splits["test"].images)
    assert torch.equal(again.labels, splits["test"].labels)
    assert len(splits["all"]) == 1797
    both = torch.cat([splits["train"].labels, splits["test"].labels]).bincount()
    assert torch.equal(both, splits["all"].labels.bincount())


def test_split_is_stratified():
    labels = np.repeat(np.arange(3), [10, 20, 31])
    mask = digits_split(labels, 0.2, seed=5)
    assert [int(mask[labels == c].sum()) for c in range(3)] == [2, 4, 6]
    assert not np.array_equal(mask, digits_split(labels, 0.2, seed=6))  # the seed matters
    np.testing.assert_array_equal(mask, digits_split(labels, 0.2, seed=5))


def test_options():
    ds = load_dataset("digits", "test", seed=1, test_fraction=0.5)
    assert len(ds) == 899 or len(ds) == 898
    with pytest.raises(ValueError, match="test_fraction"):
        load_dataset("digits", "test", test_fraction=1.5)


def test_selecting_a_class_the_dataset_lacks_is_refused(splits):
    train = splits["train"]
    assert set(train.select_classes([1, 3]).labels.tolist()) == {1, 3}
    with pytest.raises(ValueError, match=r"classes \[10, 99\] are not among the 10 classes of digits/train"):
        train.select_classes([3, 10, 99])
