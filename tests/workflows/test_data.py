"""kanzoo.workflows.data: images are read as RGB without losing their range (16-bit files scaled, not clipped)."""
import numpy as np
import pytest
from PIL import Image

from kanzoo.workflows.data import as_rgb, load_image
from kanzoo.workflows.masks import load_rgb


def _ramp16():
    return (np.arange(16 * 16, dtype=np.uint32).reshape(16, 16) * 257).astype(np.uint16)  # 0..65535 in 256 steps


def test_a_16_bit_png_is_scaled_not_clipped(tmp_path):
    values = _ramp16()
    Image.fromarray(values).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as im:
        assert im.mode.startswith("I")  # PIL keeps the 16 bits
        assert set(np.unique(np.asarray(im.convert("RGB")))) <= {0, 255}  # what a plain conversion would give
    rgb = np.asarray(load_image(tmp_path / "g16.png"))
    expected = np.round(values.astype(np.float64) * 255 / 65535).astype(np.uint8)
    assert rgb.shape == (16, 16, 3) and all(np.array_equal(rgb[..., c], expected) for c in range(3))
    assert len(np.unique(rgb)) == 256
    tensor = load_rgb(tmp_path / "g16.png")
    np.testing.assert_array_equal((tensor[0].numpy() * 255).round().astype(np.uint8), expected)


def test_8_bit_images_are_unchanged(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (8, 9, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "g.png")
    assert np.array_equal(np.asarray(load_image(tmp_path / "c.png")), rgb)
    assert np.array_equal(np.asarray(load_image(tmp_path / "g.png"))[..., 1], rgb[..., 0])


def test_images_of_unknown_range_are_refused():
    with pytest.raises(ValueError, match="8- and 16-bit"):
        as_rgb(Image.fromarray(np.full((4, 4), 70000, dtype=np.int32), mode="I"))
    with pytest.raises(ValueError, match="floating-point image"):
        as_rgb(Image.fromarray(np.zeros((4, 4), dtype=np.float32), mode="F"))
