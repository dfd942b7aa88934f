import numpy as np
import pytest
import torch
from PIL import Image

from owlearn.preprocess import Preprocessing, find_images, guess_background, load_images, to_model_input


def _digit_like(h=100, w=60, dark_on_light=True):
    img = np.zeros((h, w), np.uint8)
    img[20:80, 25:35] = 255  # a '1'
    return 255 - img if dark_on_light else img


def test_dark_on_light_image_is_inverted_for_a_dark_background_model():
    prep = Preprocessing((1, 28, 28), background="dark", fit="resize")
    t = to_model_input(_digit_like(dark_on_light=True), prep)
    assert t.shape == (1, 28, 28) and t.dtype == torch.uint8
    assert t[0, 0, 0] < 30 and t.max() > 200


def test_digit_fit_centres_the_ink_by_mass_in_a_20_pixel_box():
    prep = Preprocessing((1, 28, 28), background="dark", fit="digit")
    t = to_model_input(_digit_like(dark_on_light=False), prep)[0].float()
    ys, xs = torch.nonzero(t > 30, as_tuple=True)
    assert ys.max() - ys.min() + 1 <= 21
    cy = (t.sum(1) * torch.arange(28)).sum() / t.sum()
    cx = (t.sum(0) * torch.arange(28)).sum() / t.sum()
    assert abs(cy - 14) < 1.0 and abs(cx - 14) < 1.0


def test_rgba_drawing_on_transparent_canvas(tmp_path):
    rgba = np.zeros((50, 50, 4), np.uint8)
    rgba[10:40, 22:28] = (0, 0, 0, 255)  # black stroke, transparent elsewhere
    Image.fromarray(rgba, "RGBA").save(tmp_path / "draw.png")
    batch = load_images([tmp_path / "draw.png"], Preprocessing((1, 28, 28), "dark", "digit"))
    assert batch.shape == (1, 1, 28, 28) and batch[0, 0, 0, 0] == 0 and batch.max() > 200


def test_rgb_model_gets_three_channels(tmp_path):
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "g.png")
    assert load_images([tmp_path / "g.png"], Preprocessing((3, 32, 32), "any")).shape == (1, 3, 32, 32)


def test_unreadable_and_missing_files_are_named(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    prep = Preprocessing((1, 8, 8))
    with pytest.raises(ValueError, match="bad.png is not a readable image"):
        load_images([tmp_path / "bad.png"], prep)
    with pytest.raises(FileNotFoundError, match="gone.png"):
        load_images([tmp_path / "gone.png"], prep)


def test_find_images_expands_folders(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ["b.png", "a.jpg", "sub/c.png", ".hidden.png", "notes.txt"]:
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in find_images([tmp_path])] == ["a.jpg", "b.png", "c.png"]


def test_guess_background():
    dark = torch.zeros(2, 1, 8, 8, dtype=torch.uint8)
    assert guess_background(dark) == "dark" and guess_background(255 - dark) == "light"
