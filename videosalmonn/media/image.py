"""Image file -> RGB PIL image -> EVA-ViT input (spec §1.4, official `load_and_transform_vision_data_blip`).

The official eval path is `Image.open(p).convert("RGB")`, torchvision `Resize((224, 224), BICUBIC)` on the
PIL image (= PIL's antialiased bicubic `img.resize`, unlike the video path's `F.interpolate`), `ToTensor`
and CLIP `Normalize`; `transform_image` reproduces it bit for bit.

Mode handling (`load_image`): `.convert("RGB")` like the official code for every mode where it means
something, including its choices: alpha is dropped (not composited), CMYK uses PIL's naive formula, a palette
image takes its palette colours, EXIF orientation is ignored and an animation gives its first frame.
Where `.convert("RGB")` is ill-defined we decide instead:
* 16-bit grey (`I;16*`): PIL clips every value above 255 to white; we map the 16-bit range onto 8 bits
  (round(v / 257)), so a normal 16-bit PNG looks like its 8-bit version;
* 32-bit integer (`I`): the same 16-bit mapping if any value exceeds 255 (16-bit PNG/TIFF sources), else the
  values are already 8-bit; negative values clip to 0;
* 32-bit float (`F`): values in [0, 1] are scaled by 255, otherwise used as 8-bit values; clipped to 0..255;
* modes PIL cannot convert directly (e.g. premultiplied `La`) go through `LA`/`RGBA` first.

Image spotlight (paper App. I, `media.image_spotlight`): the image is cut into a grid of sub-images, row by row
from the top left, each given the same transform, so that the MRC Q-Former scans it like a short video:

    +----+----+
    | 0  | 1  |      grid 2 -> frames 0, 1, 2, 3 at 0.0, 0.5, 1.0, 1.5 s
    +----+----+      cell edges at round(i * W / grid), round(j * H / grid): every pixel in exactly one cell
    | 2  | 3  |
    +----+----+
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from videosalmonn.errors import MediaError
from videosalmonn.media.budget import DEFAULT_MAX_FRAME_PIXELS, check_frame_pixels
from videosalmonn.media.files import check_file
from videosalmonn.media.timeline import IMAGE_MEAN, IMAGE_STD

DEFAULT_SIZE = 224  # EVA-ViT input side
U16_TO_U8 = 65535 / 255  # = 257: maps 0..65535 onto 0..255
HIGH_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I;16BS", "I;16LS", "I;16S")
VIA_MODES = ("LA", "RGBA")  # intermediate modes for modes that cannot go straight to RGB


def load_image(path: str | Path, max_pixels: int | None = DEFAULT_MAX_FRAME_PIXELS) -> Image.Image:
    """Read `path` fully and return it as an RGB PIL image; MediaError for anything that is not one.

    `max_pixels` (see `budget`): the size in the header is checked before any pixel is decoded. PIL's own
    decompression-bomb guard (`Image.MAX_IMAGE_PIXELS`) is not ours: its warning is ignored, and its error (an
    image over twice that limit, checked by `Image.open` before we see the size) is reported as such.
    """
    p = check_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Palette images with Transparency ...", DecompressionBombWarning
            with Image.open(p) as img:
                check_frame_pixels(p, img.width, img.height, max_pixels, "image")  # the header only: lazy open
                img.load()  # decode now: truncation must fail here, not later
                return to_rgb(img)
    except Image.DecompressionBombError as e:
        raise MediaError(p, _bomb_reason(str(e), max_pixels)) from None
    except UnidentifiedImageError:
        raise MediaError(p, "not an image file (or an image format PIL cannot read)") from None
    except PermissionError:
        raise MediaError(p, "cannot read file (permission denied)") from None
    except (OSError, SyntaxError, ValueError) as e:  # truncated / corrupt data ("image file is truncated")
        raise MediaError(p, f"cannot decode image: {e}") from None


def _bomb_reason(message: str, max_pixels: int | None) -> str:
    """Our budget's message for PIL's DecompressionBombError ("Image size (N pixels) exceeds limit of M ...")."""
    sizes = [int(n) for n in re.findall(r"\d+", message)]
    pixels = sizes[0] if sizes else None
    if pixels is not None and max_pixels is not None and pixels > max_pixels:
        return (
            f"image too large: {pixels / 1e6:.1f} M pixels, over the decoded-pixel budget of {max_pixels / 1e6:.1f} M "
            f"(media.max_frame_pixels); not decoded"
        )
    limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
    return (
        f"image too large: over {limit / 1e6:.1f} M pixels, PIL's hard limit (2 x Image.MAX_IMAGE_PIXELS); not decoded"
    )


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB version of any PIL mode (see the module docstring for the modes where we differ from PIL)."""
    if img.mode == "RGB":
        return img.copy()
    if img.mode in HIGH_BIT_MODES or img.mode in ("I", "F"):
        return Image.fromarray(_to_u8(np.asarray(img), img.mode)).convert("RGB")
    try:
        return img.convert("RGB")
    except ValueError:
        for via in VIA_MODES:
            try:
                return img.convert(via).convert("RGB")
            except ValueError:
                continue
        raise


def _to_u8(values: np.ndarray, mode: str) -> np.ndarray:
    """(H, W) 16/32-bit grey -> (H, W) uint8."""
    v = values.astype(np.float64)
    if mode == "F":
        scale = 255.0 if v.size and np.nanmax(v) <= 1.0 else 1.0
        v = np.nan_to_num(v) * scale
    elif mode in HIGH_BIT_MODES or (v.size and v.max() > 255):
        v = v / U16_TO_U8
    return np.clip(np.rint(v), 0, 255).astype(np.uint8)


def transform_image(img: Image.Image, size: int = DEFAULT_SIZE) -> Tensor:
    """Official eval image transform: PIL bicubic resize to (size, size) (aspect ratio not kept), /255,
    CLIP mean/std. Returns (1, 3, size, size) float32."""
    img = img if img.mode == "RGB" else to_rgb(img)
    img = img.resize((size, size), Image.BICUBIC)
    x = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).float().div(255)  # (3, S, S)
    mean = torch.tensor(IMAGE_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGE_STD).view(3, 1, 1)
    return ((x - mean) / std)[None]  # (1, 3, S, S)


def spotlight_boxes(width: int, height: int, grid: int) -> list[tuple[int, int, int, int]]:
    """(left, top, right, bottom) of the grid x grid sub-images of a `width` x `height` image, row by row from the
    top left; they tile the image exactly. ValueError when a cell would be empty."""
    if width < grid or height < grid:
        raise ValueError(f"a {width}x{height} image cannot be split into {grid}x{grid} sub-images")
    xs = [round(i * width / grid) for i in range(grid + 1)]
    ys = [round(j * height / grid) for j in range(grid + 1)]
    return [(xs[i], ys[j], xs[i + 1], ys[j + 1]) for j in range(grid) for i in range(grid)]


def transform_spotlight(img: Image.Image, grid: int, size: int = DEFAULT_SIZE) -> Tensor:
    """The image's grid x grid sub-images (`spotlight_boxes`), each through `transform_image`:
    (grid*grid, 3, size, size) float32, in scan order."""
    img = img if img.mode == "RGB" else to_rgb(img)
    return torch.cat([transform_image(img.crop(box), size) for box in spotlight_boxes(img.width, img.height, grid)])
