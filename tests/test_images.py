"""The one image reader (instructx2x.core.images): every mode read the same way, bad images refused."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from instructx2x.core.images import UnreadableImage, read_gray


def _radiograph(h=64, w=48):
    y, x = np.mgrid[0:h, 0:w]
    return (40 + 150 * np.exp(-((x - w / 2) ** 2 + (y - h / 2) ** 2) / (2 * (w / 4) ** 2))).astype(np.uint8)


def test_8bit_is_returned_unchanged(tmp_path):
    arr = _radiograph()
    Image.fromarray(arr).save(tmp_path / "a.png")
    assert np.array_equal(read_gray(tmp_path / "a.png"), arr)


def test_16bit_is_windowed_by_its_own_range_not_clipped(tmp_path):
    arr = _radiograph().astype(np.uint16) * 64 + 1000  # 16-bit values far above 255
    Image.fromarray(arr).save(tmp_path / "a16.png")
    assert Image.open(tmp_path / "a16.png").mode.startswith("I")
    out = read_gray(tmp_path / "a16.png")
    assert out.dtype == np.uint8 and out.min() == 0 and out.max() == 255
    assert (out == 255).mean() < 0.05  # a plain convert("L") makes nearly all of it white
    expected = np.round((arr - arr.min()) * 255.0 / (arr.max() - arr.min())).astype(np.uint8)
    assert np.abs(out.astype(int) - expected).max() <= 1


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "LA"])
def test_colour_modes_read_as_luminance(tmp_path, mode):
    arr = _radiograph()
    Image.fromarray(arr).convert(mode).save(tmp_path / "c.png")
    assert np.abs(read_gray(tmp_path / "c.png").astype(int) - arr).max() <= 1


@pytest.mark.parametrize(
    "make, expect",
    [
        (lambda p: Image.fromarray(np.full((64, 64), 128, np.uint8)).save(p), "constant or near-constant"),
        (lambda p: Image.fromarray(_radiograph(8, 8)).save(p), "at least 16 px"),
        (lambda p: p.write_bytes(b"not an image"), "cannot decode image"),
        (lambda p: p.write_bytes(open(p.with_name("ok.png"), "rb").read()[:200]), "cannot decode image"),
    ],
)
def test_unusable_images_get_a_one_line_reason(tmp_path, make, expect):
    Image.fromarray(_radiograph(256, 256)).save(tmp_path / "ok.png")
    path = tmp_path / "bad.png"
    make(path)
    with pytest.raises(UnreadableImage) as err:
        read_gray(path)
    assert expect in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_decompression_bomb_refused_from_the_header(tmp_path):
    Image.new("L", (200, 200)).save(tmp_path / "big.png")
    with pytest.raises(UnreadableImage, match="decompression-bomb"):
        read_gray(tmp_path / "big.png", max_pixels=10_000)
