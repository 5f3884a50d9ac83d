"""Reading images: every common kind becomes correct 8-bit RGB; unreadable files name themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import sarb.data.dataset as dataset
from sarb.data.dataset import load_rgb, read_image
from sarb.errors import SarbError


def _save(img: Image.Image, path: Path, **kw) -> Path:
    img.save(path, **kw)
    return path


def test_greyscale_cmyk_and_palette(tmp_path: Path) -> None:
    grey = load_rgb(_save(Image.new("L", (4, 3), 77), tmp_path / "g.png"))
    assert grey.mode == "RGB" and grey.getpixel((0, 0)) == (77, 77, 77)
    cmyk = load_rgb(_save(Image.new("CMYK", (4, 3), (0, 255, 255, 0)), tmp_path / "c.jpg"))
    r, g, b = cmyk.getpixel((1, 1))
    assert cmyk.mode == "RGB" and r > 200 and g < 60 and b < 60
    pal = Image.new("P", (4, 3), 1)
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    assert load_rgb(_save(pal, tmp_path / "p.png")).getpixel((0, 0)) == (10, 200, 30)


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    arr = np.array([[0, 32896, 65535]], dtype=np.uint16)
    img = Image.fromarray(arr)
    assert img.mode.startswith("I;16")
    out = np.asarray(load_rgb(_save(img, tmp_path / "d.png")))
    assert out.shape == (1, 3, 3)
    assert out[0, :, 0].tolist() == [0, 128, 255]


def test_alpha_is_composited_on_white(tmp_path: Path) -> None:
    img = Image.new("RGBA", (2, 1), (255, 0, 0, 255))
    img.putpixel((1, 0), (0, 0, 255, 0))  # fully transparent blue
    out = load_rgb(_save(img, tmp_path / "a.png"))
    assert out.getpixel((0, 0)) == (255, 0, 0) and out.getpixel((1, 0)) == (255, 255, 255)


def test_exif_rotation_is_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (4, 2), (0, 0, 0))
    img.putpixel((0, 0), (255, 255, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    out = load_rgb(_save(img, tmp_path / "e.jpg", exif=exif, quality=100))
    assert out.size == (2, 4)
    assert sum(out.getpixel((1, 0))) > 600  # the top-left pixel moved to the top-right


@pytest.mark.parametrize("content", [b"", b"\xff\xd8\xff\xe0 not really a jpeg"])
def test_unreadable_files_raise_naming_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(SarbError, match="bad.jpg"):
        load_rgb(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SarbError, match="not found"):
        load_rgb(tmp_path / "nope.png")


def _photo(path: Path, mode: str = "RGB", **kw) -> Path:
    arr = (np.random.default_rng(0).random((30, 40, 3)) * 255).astype(np.uint8)
    return _save(Image.fromarray(arr).convert(mode), path, quality=90, **kw)


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
def test_read_image_decodes_jpegs_without_pillow_to_the_same_pixels(tmp_path, mode, monkeypatch):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = _photo(tmp_path / "p.jpg", mode, exif=exif)
    expected = np.asarray(load_rgb(path)).transpose(2, 0, 1)  # Pillow's (3, H, W)
    monkeypatch.setattr(dataset, "load_rgb", lambda p: pytest.fail("Pillow was used"))
    got = read_image(path)
    assert got.dtype == torch.uint8 and got.shape == (3, 40, 30)
    assert np.abs(got.numpy().astype(int) - expected).max() <= 1


def test_read_image_uses_pillow_for_other_formats_and_bad_jpegs(tmp_path: Path) -> None:
    img = Image.new("RGBA", (2, 1), (255, 0, 0, 255))
    img.putpixel((1, 0), (0, 0, 255, 0))
    out = read_image(_save(img, tmp_path / "a.png"))
    assert out[:, 0, 1].tolist() == [255, 255, 255]  # alpha composited on white, as load_rgb
    data = _photo(tmp_path / "p.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(SarbError, match="cut.jpg"):
        read_image(tmp_path / "cut.jpg")
    with pytest.raises(SarbError, match="not found"):
        read_image(tmp_path / "nope.jpg")


def test_read_image_keeps_pillows_decompression_bomb_limit(tmp_path, monkeypatch) -> None:
    """A JPEG far over Image.MAX_IMAGE_PIXELS is refused before decode_jpeg allocates it."""
    path = _photo(tmp_path / "big.jpg")  # 30 x 40 = 1200 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    for read in (load_rgb, read_image):
        with pytest.raises(SarbError, match="big.jpg.*decompression bomb"):
            read(path)
