"""Image folders: one sub-folder per class, read with Pillow."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from owlearn.data import load_dataset
from owlearn.data.formats import DatasetFormatError, load_image_folder


def _gray(value: int, size=(6, 4)) -> np.ndarray:
    return np.full(size, value, dtype=np.uint8)


def test_grayscale_folder(tmp_path, gen):
    classes = {"b_square": [_gray(10), _gray(20)], "a_circle": [_gray(30)]}
    root = gen.make_image_folder(tmp_path / "shapes", classes)
    (root / "a_circle" / ".hidden.png").write_bytes(b"not an image")  # hidden: skipped
    (root / "a_circle" / "notes.txt").write_text("not an image")  # not an image extension: skipped
    (root / ".cache").mkdir()  # hidden folder: not a class
    ds = load_image_folder(root)
    assert ds.class_names == ["a_circle", "b_square"]
    assert ds.labels.tolist() == [0, 1, 1]
    assert ds.images.shape == (3, 1, 6, 4)
    assert [int(ds.images[i].max()) for i in range(3)] == [30, 10, 20]  # lossless PNG, sorted files
    assert ds.name == "shapes" and ds.meta["paths"][0].endswith("a_circle/000.png")


def test_mixed_modes_become_rgb(tmp_path, gen):
    rgb = np.zeros((6, 4, 3), dtype=np.uint8)
    rgb[..., 0] = 200
    root = gen.make_image_folder(tmp_path / "f", {"gray": [_gray(50)], "red": [rgb]})
    ds = load_image_folder(root)
    assert ds.images.shape == (2, 3, 6, 4)
    assert ds.images[0, :, 0, 0].tolist() == [50, 50, 50]
    assert ds.images[1, :, 0, 0].tolist() == [200, 0, 0]


def test_formats_and_grayscale_palette(tmp_path):
    root = tmp_path / "f"
    (root / "a").mkdir(parents=True)
    Image.fromarray(_gray(77)).save(root / "a" / "x.BMP")
    Image.fromarray(_gray(90)).convert("P").save(root / "a" / "y.gif")  # palette of grays
    Image.fromarray(_gray(100)).save(root / "a" / "z.webp", lossless=True)
    Image.fromarray(_gray(120)).save(root / "a" / "w.jpg", quality=100)
    ds = load_image_folder(root)
    assert ds.images.shape == (4, 1, 6, 4)  # all grayscale: mode L
    assert [int(v) for v in ds.images[:, 0, 0, 0]] == pytest.approx([120, 77, 90, 100], abs=2)  # w, x, y, z


def test_sixteen_bit_png_keeps_range(tmp_path):
    (tmp_path / "f" / "a").mkdir(parents=True)
    Image.fromarray(np.full((3, 3), 65535, dtype=np.uint16)).save(tmp_path / "f" / "a" / "x.png")
    assert int(load_image_folder(tmp_path / "f").images.max()) == 255


def test_different_sizes_need_a_size(tmp_path, gen):
    root = gen.make_image_folder(tmp_path / "f", {"a": [_gray(1, (6, 4))], "b": [_gray(2, (8, 8))]})
    with pytest.raises(DatasetFormatError, match=r"sizes: a/000.png is 4x6 but b/000.png is 8x8.*size="):
        load_image_folder(root)
    ds = load_image_folder(root, size=(5, 7))
    assert ds.images.shape == (2, 1, 5, 7)
    assert load_image_folder(root, size=3, mode="RGB").images.shape == (2, 3, 3, 3)


def test_unreadable_image_names_the_file(tmp_path, gen):
    root = gen.make_image_folder(tmp_path / "f", {"a": [_gray(1)]})
    (root / "a" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DatasetFormatError, match=r"a/broken.png: cannot read this image"):
        load_image_folder(root)


def test_truncated_image_names_the_file(tmp_path, gen):
    root = gen.make_image_folder(tmp_path / "f", {"a": [np.random.default_rng(0).integers(0, 255, (64, 64))]})
    data = (root / "a" / "000.png").read_bytes()
    (root / "a" / "000.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetFormatError, match=r"a/000.png: cannot read this image"):
        load_image_folder(root)


def test_empty_class_and_no_classes(tmp_path, gen):
    root = gen.make_image_folder(tmp_path / "f", {"a": [_gray(1)]})
    (root / "empty").mkdir()
    with pytest.raises(DatasetFormatError, match="empty: class folder without images"):
        load_image_folder(root)
    (tmp_path / "bare").mkdir()
    with pytest.raises(DatasetFormatError, match="no images and no class sub-folders"):
        load_image_folder(tmp_path / "bare")


def test_a_folder_of_images_without_sub_folders_is_one_unlabeled_set(tmp_path, gen):
    root = gen.make_image_folder(tmp_path / "f", {"a": [_gray(1), _gray(2)]})
    flat = tmp_path / "flat"
    (root / "a").rename(flat)
    ds = load_image_folder(flat)
    assert len(ds) == 2 and ds.num_classes == 0 and ds.labels.tolist() == [-1, -1]
    assert [p.rsplit("/", 1)[-1] for p in ds.meta["paths"]] == ["000.png", "001.png"]


def test_load_dataset_with_folders(tmp_path, gen):
    root = gen.make_image_folder(tmp_path / "pics", {"a": [_gray(1)], "b": [_gray(2)]})
    for name in (f"folder:{root}", str(root)):
        ds = load_dataset(name)
        assert len(ds) == 2 and ds.meta["dataset"] == f"folder:{root}"
    assert load_dataset(str(root), "all", size=2).images.shape == (2, 1, 2, 2)
    with pytest.raises(ValueError, match="no split sub-folders"):
        load_dataset(str(root), "test")
    with pytest.raises(TypeError, match="unknown option.*colour"):
        load_dataset(str(root), colour=True)


def test_folder_with_split_subfolders(tmp_path, gen):
    gen.make_image_folder(tmp_path / "ds" / "train", {"a": [_gray(1)] * 3, "b": [_gray(2)]})
    gen.make_image_folder(tmp_path / "ds" / "test", {"a": [_gray(1)], "b": [_gray(2)]})
    assert len(load_dataset(f"folder:{tmp_path / 'ds'}", "train")) == 4
    assert len(load_dataset(f"folder:{tmp_path / 'ds'}", "test")) == 2
    with pytest.raises(ValueError, match="has split folders train, test"):
        load_dataset(f"folder:{tmp_path / 'ds'}", "all")
