"""What OwlModel.predict accepts (paths, folders, integer arrays) and what OwlModel.load checks of the input
shape a model file declares."""

import json
import os
import re
import time

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import save_file

from owlearn.bundle import ModelFileError, read_bundle
from owlearn.model import OwlModel
from owlearn.nets import Network, NetworkSpec
from owlearn.preprocess import Preprocessing


def _model(backbone="convnet", side=10):
    torch.manual_seed(0)
    args = {"widths": (8, 8, 16, 16)} if backbone == "convnet" else {}
    spec = NetworkSpec(backbone, "linear", 3, (1, side, side), backbone_args=args)
    return OwlModel(Network(spec).eval(), ["a", "b", "c"], Preprocessing((1, side, side), background="any"))


@pytest.fixture(scope="module")
def model():
    return _model()


@pytest.fixture
def images(tmp_path):
    """A folder ``imgs`` of three 10×10 PNGs of different brightness, and their uint8 batch."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    g = np.random.default_rng(0)
    batch = g.integers(0, 256, (3, 1, 10, 10)).astype(np.uint8)
    for i, img in enumerate(batch):
        Image.fromarray(img[0]).save(folder / f"d{i}.png")
    return folder, batch


def test_one_path_is_one_image(model, images):
    folder, batch = images
    expected = model.predict(batch[:1]).probabilities
    for one in [folder / "d0.png", str(folder / "d0.png")]:
        assert np.allclose(model.predict(one).probabilities, expected, atol=1e-6)


def test_folders_are_expanded_as_the_command_line_does(model, images):
    folder, batch = images
    expected = model.predict(batch).probabilities
    assert np.allclose(model.predict([folder]).probabilities, expected, atol=1e-6)
    assert np.allclose(model.predict(str(folder)).probabilities, expected, atol=1e-6)


def test_missing_path_is_named(model, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"image .*nope\.png does not exist"):
        model.predict(str(tmp_path / "nope.png"))


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint16, torch.int32, torch.int64])
def test_integer_images_are_pixel_values(model, dtype):
    batch = np.random.default_rng(1).integers(0, 256, (4, 1, 10, 10)).astype(np.uint8)
    expected = model.predict(batch).probabilities
    given = batch.astype(dtype) if isinstance(dtype, type) else torch.from_numpy(batch).to(dtype)
    assert np.array_equal(model.predict(given).probabilities, expected)


@pytest.mark.parametrize("given", [np.full((2, 1, 10, 10), 300, np.int64), torch.full((2, 1, 10, 10), -1)])
def test_integer_images_outside_0_255_are_refused(model, given):
    with pytest.raises(ValueError, match=r"integer pixel values from (300 to 300|-1 to -1) in images of type "
                                         r"(int64|torch.int64); integer images must hold 8-bit values"):
        model.predict(given)


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True])
def test_batch_size_below_one_is_refused(model, batch_size):
    with pytest.raises(ValueError, match=re.escape(f"batch_size must be a whole number of at least 1, "
                                                   f"got {batch_size!r}")):
        model.predict(np.zeros((2, 1, 10, 10), np.uint8), batch_size=batch_size)


def test_wrong_shapes_are_reported_as_given(model):
    with pytest.raises(ValueError, match=r"one image of shape \(10, 10\) given where a batch \(N, 1, 10, 10\) "
                                         r"is expected; add a batch dimension"):
        model.predict(np.zeros((10, 10)))
    with pytest.raises(ValueError, match=r"images of shape \(8, 8\) given to a model that takes batches "
                                         r"\(N, 1, 10, 10\)"):
        model.predict(np.zeros((8, 8)))
    with pytest.raises(ValueError, match=r"images of shape \(1, 8, 8\) given to a model that takes \(1, 10, 10\)"):
        model.predict(np.zeros((2, 1, 8, 8)))


# -- the input shape a model file declares ---------------------------------------------------------------

def _rewritten(source, target, edit):
    contents = read_bundle(source)
    header = json.loads(json.dumps(contents.header))
    edit(header)
    save_file({k: v.contiguous() for k, v in contents.tensors.items()}, str(target),
              metadata={"owlearn": json.dumps(header)})
    return target


def _set(section, shape):
    return lambda header: header[section].update(in_shape=shape)


def test_preprocessing_with_other_channels_than_the_network_is_refused(model, tmp_path):
    path = _rewritten(model.save(tmp_path / "m.owl"), tmp_path / "rgb.owl", _set("preprocessing", [3, 10, 10]))
    with pytest.raises(ModelFileError, match=f"^{re.escape(str(path))}: the preprocessing has in_shape "
                                             r"\[3, 10, 10\], but the network takes 1-channel images "
                                             r"\(its in_shape is \[1, 10, 10\]\)"):
        OwlModel.load(path)


@pytest.mark.parametrize("section", ["preprocessing", "network"])
def test_huge_in_shape_is_refused_at_once(model, tmp_path, section):
    path = _rewritten(model.save(tmp_path / "m.owl"), tmp_path / "huge.owl", _set(section, [1, 100000, 100000]))
    start = time.perf_counter()
    with pytest.raises(ModelFileError, match=f"^{re.escape(str(path))}: the {section} has in_shape "
                                             r"\[1, 100000, 100000\], larger than 4096 in a dimension"):
        OwlModel.load(path)
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("shape", [[1, 10], [1, 0, 10], [1, 10.5, 10], "1x10x10"])
def test_in_shape_that_is_not_three_positive_whole_numbers_is_refused(model, tmp_path, shape):
    path = _rewritten(model.save(tmp_path / "m.owl"), tmp_path / "bad.owl", _set("preprocessing", shape))
    with pytest.raises(ModelFileError, match=r"the preprocessing has in_shape .*, not three positive whole "
                                             r"numbers \(C, H, W\)"):
        OwlModel.load(path)


def test_other_image_size_is_refused_only_where_the_network_cannot_take_it(tmp_path):
    pooling = _rewritten(_model().save(tmp_path / "c.owl"), tmp_path / "c12.owl", _set("preprocessing", [1, 12, 12]))
    loaded = OwlModel.load(pooling)  # global average pooling takes 12×12 as well as 10×10
    assert loaded.predict(np.zeros((2, 1, 12, 12), np.uint8)).labels.shape == (2,)
    fixed = _rewritten(_model("simplenet", 16).save(tmp_path / "s.owl"), tmp_path / "s20.owl",
                       _set("preprocessing", [1, 20, 20]))
    with pytest.raises(ModelFileError, match=r"the preprocessing has in_shape \[1, 20, 20\], which the network, "
                                             r"made for \[1, 16, 16\], cannot take"):
        OwlModel.load(fixed)


# -- saving ------------------------------------------------------------------------------------------------

def test_saving_through_a_symlink_updates_its_target(model, tmp_path):
    target = model.save(tmp_path / "v3.owl")
    (tmp_path / "current.owl").symlink_to("v3.owl")
    model.info["note"] = "updated"
    try:
        model.save(tmp_path / "current.owl")
    finally:
        model.info.pop("note")
    assert os.readlink(tmp_path / "current.owl") == "v3.owl"
    assert OwlModel.load(target).info["note"] == "updated"
    assert sorted(os.listdir(tmp_path)) == ["current.owl", "v3.owl"]


def test_safetensors_write_error_is_an_oserror_naming_the_model_file(model, tmp_path, monkeypatch):
    import owlearn.bundle as bundle

    path = model.save(tmp_path / "m.owl")
    before = path.read_bytes()

    def too_large(tensors, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(b"partial")
        raise SafetensorError("I/O error: File too large (os error 27)")

    monkeypatch.setattr(bundle, "save_file", too_large)
    with pytest.raises(OSError, match=f"^cannot write {re.escape(str(path))}: I/O error: File too large"):
        model.save(path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.owl"]


def test_add_class_counts_a_file_named_twice_once(model_on_three, tmp_path):
    model, data = model_on_three
    folder = tmp_path / "p3"
    folder.mkdir()
    for i, img in enumerate(data.images[data.labels == 3][:6]):
        Image.fromarray(img[0].numpy()).save(folder / f"{i}.png")
    once, twice = (OwlModel.load(model.save(tmp_path / f"{n}.owl")) for n in ("once", "twice"))
    once.add_class("p3", [folder])
    twice.add_class("p3", [folder, folder / "0.png", str(folder)])  # the same six files, some named again
    assert int(twice.gaussian.counts_[-1]) == int(once.gaussian.counts_[-1]) == 6
