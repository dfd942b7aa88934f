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


def _digit_with_grey_levels():
    """A '0'-like ring with anti-aliased grey edges, dark on light, as scanned digits look."""
    yy, xx = np.mgrid[:40, :32]
    r = np.hypot((yy - 20) / 14, (xx - 16) / 10)
    ink = np.clip(1 - np.abs(r - 0.8) * 6, 0, 1)
    return np.rint(255 * (1 - ink)).astype(np.uint8)


@pytest.mark.parametrize("fit", ["resize", "digit"])
def test_16_bit_png_gives_the_input_of_the_8_bit_one(tmp_path, fit):
    digit = _digit_with_grey_levels()
    Image.fromarray(digit).save(tmp_path / "d8.png")
    Image.fromarray(digit.astype(np.uint16) * 257).save(tmp_path / "d16.png")  # 255 → 65535
    with Image.open(tmp_path / "d16.png") as img:
        assert img.mode == "I;16"  # what Pillow makes of a 16-bit grayscale PNG
    prep = Preprocessing((1, 28, 28), background="dark", fit=fit)
    eight, sixteen = load_images([tmp_path / "d8.png", tmp_path / "d16.png"], prep).int()
    assert (eight - sixteen).abs().max() <= 1 and eight.max() > 200 and eight[0, 0, 0] < 30


def _modes_of(digit):
    """The same picture in PIL's 16-bit modes and as floats in [0, 1] and [0, 255]."""
    wide = digit.astype(np.uint16) * 257
    return {
        "I;16B": Image.frombytes("I;16B", digit.shape[::-1], wide.astype(">u2").tobytes()),
        "I": Image.fromarray(wide.astype(np.int32)),
        "F [0, 1]": Image.fromarray(digit.astype(np.float32) / 255),
        "F [0, 255]": Image.fromarray(digit.astype(np.float32)),
    }


@pytest.mark.parametrize("mode", ["I;16B", "I", "F [0, 1]", "F [0, 255]"])
@pytest.mark.parametrize("channels", [1, 3])
def test_16_bit_and_float_images_are_scaled_not_clipped(mode, channels):
    digit = _digit_with_grey_levels()
    img = _modes_of(digit)[mode]
    assert img.mode == mode.split()[0]
    prep = Preprocessing((channels, 28, 28), background="dark")
    expected = to_model_input(Image.fromarray(digit), prep).int()
    assert (to_model_input(img, prep).int() - expected).abs().max() <= 1


def test_an_image_folder_reads_16_bit_and_float_files_as_prediction_does(tmp_path):
    from owlearn.data.formats import load_image_folder

    digit = _digit_with_grey_levels()
    (tmp_path / "zero").mkdir()
    Image.fromarray(digit).save(tmp_path / "zero" / "a-8bit.png")
    Image.fromarray(digit.astype(np.uint16) * 257).save(tmp_path / "zero" / "b-16bit.png")
    _modes_of(digit)["F [0, 1]"].save(tmp_path / "zero" / "c-float.tif")
    images = load_image_folder(tmp_path).images.int()  # training reads them through the same rule
    assert len(images) == 3 and (images - images[0]).abs().max() <= 1 and images.max() == 255


def test_mode_i_within_8_bits_is_read_as_8_bits():
    digit = _digit_with_grey_levels()  # mode "I" has no bit depth: values up to 255 are 8-bit ones
    prep = Preprocessing((1, 28, 28), background="dark")
    assert torch.equal(to_model_input(Image.fromarray(digit.astype(np.int32)), prep),
                       to_model_input(Image.fromarray(digit), prep))


def test_float_and_integer_arrays_are_read_as_pixels():
    digit = _digit_with_grey_levels()
    prep = Preprocessing((1, 28, 28), background="dark")
    expected = to_model_input(digit, prep)
    for arr in [digit.astype(np.int64), digit.astype(np.uint16), digit / 255.0, digit[:, :, None]]:
        assert torch.equal(to_model_input(arr, prep), expected), arr.dtype


def test_integer_array_outside_0_255_is_refused():
    wide = (np.arange(64, dtype=np.uint16) * 1040).reshape(8, 8)  # 0..65520
    with pytest.raises(ValueError, match=r"integer pixel values from 0 to 65520 in the image array of type "
                                         r"uint16; integer images must hold 8-bit values 0\.\.255"):
        to_model_input(wide, Preprocessing((1, 8, 8)))


def test_load_images_expands_folders_and_takes_pil_images_and_arrays(tmp_path):
    (tmp_path / "imgs").mkdir()
    for name, value in [("b.png", 200), ("a.png", 100)]:
        Image.fromarray(np.full((12, 12), value, np.uint8)).save(tmp_path / "imgs" / name)
    prep = Preprocessing((1, 6, 6), background="any")
    batch = load_images([tmp_path / "imgs", Image.fromarray(np.full((9, 9), 7, np.uint8)),
                         np.full((5, 5), 9, np.uint8)], prep)
    assert batch[:, 0, 0, 0].tolist() == [100, 200, 7, 9]  # the folder's files sorted, then the rest in order
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="folder .*empty holds no image files"):
        load_images([tmp_path / "empty"], prep)
    with pytest.raises(TypeError, match="got int"):
        load_images([3], prep)
