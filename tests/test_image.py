"""videosalmonn.media.image: any PIL mode -> RGB, the official eval transform (golden case `audioimage`)."""

from __future__ import annotations

import os
import struct
import warnings
import zlib

import numpy as np
import pytest
import torch
from conftest import GOLDEN, needs_golden
from PIL import Image

from videosalmonn.errors import MediaError
from videosalmonn.media.image import load_image, to_rgb, transform_image

GOLDEN_IMAGE = GOLDEN / "media" / "761183272.jpg"
RNG = np.random.default_rng(0)


def _save(img: Image.Image, path, fmt: str | None = None):
    img.save(path, fmt)
    return path


def _noise(h=20, w=30, channels=3, dtype=np.uint8, high=256) -> np.ndarray:
    return RNG.integers(0, high, (h, w, channels) if channels else (h, w)).astype(dtype)


# -------------------------------------------------------------------------------------------- golden


@needs_golden
def test_golden_image_transform_bit_identical(golden_tensors):
    x = transform_image(load_image(GOLDEN_IMAGE))
    assert x.shape == (1, 3, 224, 224) and x.dtype == torch.float32
    assert torch.equal(x, golden_tensors("audioimage")["image"])


# --------------------------------------------------------------------------------------------- modes

# Modes where the official `.convert("RGB")` is well defined: we must give exactly its pixels.
OFFICIAL_MODES = {
    "1": ("PNG", lambda: Image.fromarray(_noise(channels=0) > 127)),
    "L": ("PNG", lambda: Image.fromarray(_noise(channels=0))),
    "LA": ("PNG", lambda: Image.fromarray(_noise(channels=2), "LA")),
    "P": ("PNG", lambda: Image.fromarray(_noise()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)),
    "RGBA": ("PNG", lambda: Image.fromarray(_noise(channels=4), "RGBA")),
    "RGB": ("JPEG", lambda: Image.fromarray(_noise())),
    "CMYK": ("JPEG", lambda: Image.fromarray(_noise(channels=4), "CMYK")),
    "CMYK-tiff": ("TIFF", lambda: Image.fromarray(_noise(channels=4), "CMYK")),
    "LAB": ("TIFF", lambda: Image.fromarray(_noise(), "LAB")),
}


@pytest.mark.parametrize("mode", sorted(OFFICIAL_MODES))
def test_modes_like_official_convert(tmp_path, mode):
    fmt, make = OFFICIAL_MODES[mode]
    path = _save(make(), tmp_path / f"img.{fmt.lower()}", fmt)
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (30, 20)
    with Image.open(path) as official:
        assert np.array_equal(np.asarray(img), np.asarray(official.convert("RGB")))


def test_palette_with_transparency_does_not_warn(tmp_path):
    p = Image.fromarray(_noise()).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    p.info["transparency"] = 0
    path = _save(p, tmp_path / "t.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_image(path).mode == "RGB"


def test_16_bit_grey_is_rescaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32896, 65535]], np.uint16)  # 0, 1, 128, 255 in 8 bits
    path = _save(Image.fromarray(values), tmp_path / "g16.png")
    with Image.open(path) as raw:
        assert raw.mode == "I;16"
    img = np.asarray(load_image(path))
    assert img.shape == (1, 4, 3) and img[0, :, 0].tolist() == [0, 1, 128, 255]
    assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()


def test_16_bit_big_endian_tiff(tmp_path):
    img = Image.frombytes("I;16B", (2, 1), np.array([0, 65535], ">u2").tobytes())  # (.convert clips)
    path = _save(img, tmp_path / "g16b.tif")
    assert np.asarray(load_image(path))[0, :, 0].tolist() == [0, 255]


def test_32_bit_int_and_float(tmp_path):
    eight_bit = Image.fromarray(np.array([[0, 100, 255]], np.int32), "I")
    sixteen_bit = Image.fromarray(np.array([[-5, 32896, 65535]], np.int32), "I")
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32), "F")
    wide = Image.fromarray(np.array([[-3.0, 100.4, 300.0]], np.float32), "F")
    expected = {"i8": [0, 100, 255], "i16": [0, 128, 255], "f1": [0, 128, 255], "f255": [0, 100, 255]}
    for name, img in {"i8": eight_bit, "i16": sixteen_bit, "f1": unit, "f255": wide}.items():
        path = _save(img, tmp_path / f"{name}.tif")
        assert np.asarray(load_image(path))[0, :, 0].tolist() == expected[name], name


@pytest.mark.parametrize("mode", ["La", "PA", "HSV", "YCbCr", "RGBa", "RGBX", "I;16L", "I;16N"])
def test_to_rgb_in_memory_modes(mode):
    img = to_rgb(Image.new(mode, (5, 3)))
    assert img.mode == "RGB" and img.size == (5, 3)


# ---------------------------------------------------------------------------------------- transform


@pytest.mark.parametrize("size", [(8, 8), (4000, 10), (10, 4000), (1, 1)])
def test_tiny_and_extreme_aspect_images(tmp_path, size):
    path = _save(Image.fromarray(_noise(size[1], size[0])), tmp_path / "x.png")
    x = transform_image(load_image(path))
    assert x.shape == (1, 3, 224, 224) and torch.isfinite(x).all()


def test_transform_matches_torchvision_recipe():
    """Resize((s,s), BICUBIC) on PIL, ToTensor, Normalize - written out with PIL + numpy."""
    img = Image.fromarray(_noise(50, 70))
    resized = np.asarray(img.resize((32, 32), Image.BICUBIC), np.float32) / 255  # (32, 32, 3)
    mean = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
    std = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
    expected = torch.from_numpy(((resized - mean) / std).transpose(2, 0, 1))[None]
    torch.testing.assert_close(transform_image(img, size=32), expected, rtol=0, atol=1e-6)


def test_transform_accepts_non_rgb_image():
    grey = Image.fromarray(_noise(channels=0))
    assert torch.equal(transform_image(grey, 16), transform_image(grey.convert("RGB"), 16))


# ------------------------------------------------------------------------------------------ bad input


def _png_claiming_size(path, width: int, height: int):
    """A valid tiny PNG whose header claims width x height (decompression-bomb check)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


@pytest.fixture
def bad_images(tmp_path):
    jpeg = _save(Image.fromarray(_noise(64, 64)), tmp_path / "ok.jpg").read_bytes()
    png = _save(Image.fromarray(_noise(64, 64)), tmp_path / "ok.png").read_bytes()
    (tmp_path / "half.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (tmp_path / "half.png").write_bytes(png[: len(png) // 2])
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("this is not an image\n")
    os.mkfifo(tmp_path / "fifo.jpg")
    return {
        "missing": (tmp_path / "missing.jpg", "file not found"),
        "directory": (tmp_path, "is a directory"),
        "empty": (tmp_path / "empty.jpg", "file is empty"),
        "not an image": (tmp_path / "notes.jpg", "not an image file"),
        "truncated jpeg": (tmp_path / "half.jpg", "truncated"),
        "truncated png": (tmp_path / "half.png", "truncated"),
        "fifo": (tmp_path / "fifo.jpg", "not a regular file"),
        "bomb": (_png_claiming_size(tmp_path / "bomb.png", 60_000, 60_000), "too large"),
    }


@pytest.mark.parametrize(
    "case", ["missing", "directory", "empty", "not an image", "truncated jpeg", "truncated png", "fifo", "bomb"]
)
def test_bad_input_is_one_line_media_error(bad_images, case):
    path, problem = bad_images[case]
    with pytest.raises(MediaError) as e:
        load_image(path)
    assert problem in str(e.value) and str(path) in str(e.value) and "\n" not in str(e.value)
