import pytest
import torch

from owlearn.data.augment import PRESETS, AugmentConfig, augment_batch, preset


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_identity_config_returns_the_batch():
    x = torch.rand(4, 1, 8, 8)
    assert augment_batch(x, AugmentConfig(), _gen()) is x


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_keep_shape_range_and_are_seeded(name):
    x = torch.rand(16, 3, 12, 12)
    a = augment_batch(x, preset(name), _gen(1))
    b = augment_batch(x, preset(name), _gen(1))
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b)


def test_crop_pad_translates_by_whole_pixels():
    x = torch.zeros(64, 1, 9, 9)
    x[:, :, 4, 4] = 1
    y = augment_batch(x, AugmentConfig(crop_pad=2), _gen())
    pos = y[:, 0].flatten(1).argmax(1)
    rows, cols = pos // 9, pos % 9
    assert torch.all(y.flatten(1).sum(1) == 1)  # the dot moves, it is never blurred or lost
    assert set(rows.tolist()) <= {2, 3, 4, 5, 6} and set(cols.tolist()) <= {2, 3, 4, 5, 6}
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 5


def test_hflip_mirrors_about_half_the_images():
    x = torch.arange(8.0).repeat(200, 1, 8, 1) / 8
    y = augment_batch(x, AugmentConfig(hflip=True), _gen())
    flipped = (y[:, 0, 0, 0] > 0.5).float().mean()
    assert 0.4 < flipped < 0.6
    assert torch.equal(y[y[:, 0, 0, 0] > 0.5], x.flip(3)[y[:, 0, 0, 0] > 0.5])


def test_rotation_by_zero_degrees_changes_nothing():
    x = torch.rand(4, 1, 10, 10)
    y = augment_batch(x, AugmentConfig(rotate=1e-9), _gen())
    assert torch.allclose(x, y, atol=1e-5)


def test_unknown_preset_is_named():
    with pytest.raises(ValueError, match="unknown augmentation 'sparkle'"):
        preset("sparkle")
