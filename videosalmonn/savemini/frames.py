"""Scene -> frames: the background, every visible object and every word on screen, as uint8 RGB.

    render_frames(scene)  (N, FRAME_SIZE, FRAME_SIZE, 3) uint8, N = ceil(duration * FPS), frame i at t = i / FPS
    render_frame(scene, t)  one (FRAME_SIZE, FRAME_SIZE, 3) frame; an image scene is render_frame(scene, 0)
    object_state(o, t)  where an object is at t, how big and in which colour (None when not on screen)
    text_box(text)  the pixel box a word's ink fills

Shapes are drawn without anti-aliasing (every object pixel has exactly its colour); words are anti-aliased
DejaVu Sans Bold, their glyph height (the height of a capital H) `height * FRAME_SIZE`, the ink centred at
`position`. Objects are drawn in scene order, then the words. A frame whose drawing state equals the previous
frame's is a copy of it, so still scenes cost one drawing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from videosalmonn.errors import InputError
from videosalmonn.savemini.scene import (
    BACKGROUNDS,
    COLOURS,
    FLASH_COLOUR,
    FLASH_SECONDS,
    FPS,
    FRAME_SIZE,
    SIZES,
    OnScreenText,
    Scene,
    VisualObject,
)

FONT_PATH = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")  # Debian fonts-dejavu-core
RING_WIDTH = 0.42  # a ring's band, as a fraction of its radius
CROSS_ARM = 0.34  # half the width of a cross's arm, as a fraction of its radius
STAR_INNER = 0.45  # a star's inner radius, as a fraction of its outer radius


@dataclass(frozen=True)
class ObjectState:
    """An object as drawn at one time, in pixels of the frame."""

    centre: tuple[float, float]  # (x, y) pixels
    radius: float  # pixels: the half-height of the shape's box
    rgb: tuple[int, int, int]  # its colour, or FLASH_COLOUR while it flashes
    probe: tuple[int, int]  # (x, y) a pixel well inside the shape's ink (the band of a ring, else the centre)
    flashing: bool


# ------------------------------------------------------------------------------------------ public API


def frame_count(scene: Scene) -> int:
    """Frames of a scene: ceil(duration * FPS) (a float product such as 0.7 * 10 is not rounded up), 1 for an image."""
    if scene.kind == "image":
        return 1
    return max(1, math.ceil(scene.duration * FPS - 1e-6))


def render_frames(scene: Scene) -> np.ndarray:
    """(N, FRAME_SIZE, FRAME_SIZE, 3) uint8: frame i shows the scene at t = i / FPS."""
    n = frame_count(scene)
    out = np.empty((n, FRAME_SIZE, FRAME_SIZE, 3), np.uint8)
    previous = None
    for i in range(n):
        state = _frame_state(scene, i / FPS)
        if state == previous:
            out[i] = out[i - 1]
        else:
            out[i] = _draw(scene.background, state)
        previous = state
    return out


def render_frame(scene: Scene, t: float) -> np.ndarray:
    """(FRAME_SIZE, FRAME_SIZE, 3) uint8: the scene at time t."""
    return _draw(scene.background, _frame_state(scene, t))


def object_state(o: VisualObject, t: float) -> ObjectState | None:
    """Where `o` is at t (centre and radius interpolated linearly over [appear, disappear)), or None if hidden."""
    if not o.appear <= t < o.disappear:
        return None
    u = (t - o.appear) / (o.disappear - o.appear)
    x = (o.start[0] + u * (o.end[0] - o.start[0])) * FRAME_SIZE
    y = (o.start[1] + u * (o.end[1] - o.start[1])) * FRAME_SIZE
    r = SIZES[o.size] * (1.0 + u * (o.grow - 1.0)) * FRAME_SIZE
    flashing = any(f <= t < f + FLASH_SECONDS for f in o.flashes)
    rgb = FLASH_COLOUR if flashing else COLOURS[o.colour]
    dx = (1.0 - RING_WIDTH / 2) * r if o.shape == "ring" else 0.0
    return ObjectState((x, y), r, rgb, (int(round(x + dx)), int(round(y))), flashing)


def text_box(text: OnScreenText) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) pixels, x1/y1 exclusive: where the word's ink is drawn (it may reach past the frame)."""
    mask = _text_mask(text.text, _font_px(text.height))
    x0, y0 = _text_origin(text, mask)
    return x0, y0, x0 + mask.width, y0 + mask.height


# ---------------------------------------------------------------------------------------------- drawing


def _frame_state(scene: Scene, t: float) -> tuple:
    """Everything that decides the pixels at t: hashable, so equal states share one drawing."""
    shapes = []
    for o in scene.objects:
        s = object_state(o, t)
        if s is not None:
            shapes.append((o.shape, round(s.centre[0], 2), round(s.centre[1], 2), round(s.radius, 2), s.rgb))
    words = tuple(w for w in scene.texts if w.appear <= t < w.disappear)
    return tuple(shapes), words


def _draw(background: str, state: tuple) -> np.ndarray:
    shapes, words = state
    img = Image.new("RGB", (FRAME_SIZE, FRAME_SIZE), BACKGROUNDS[background])
    if shapes:
        draw = ImageDraw.Draw(img)
        for shape, x, y, r, rgb in shapes:
            _draw_shape(draw, shape, x, y, r, rgb)
    for w in words:
        ink, mask = _text_layer(w.text, _font_px(w.height), w.colour)
        img.paste(ink, _text_origin(w, mask), mask)
    return np.asarray(img)


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, x: float, y: float, r: float, rgb) -> None:
    box = (x - r, y - r, x + r, y + r)
    if shape == "circle":
        draw.ellipse(box, fill=rgb)
    elif shape == "ring":
        draw.ellipse(box, outline=rgb, width=max(1, round(RING_WIDTH * r)))
    elif shape == "square":
        draw.rectangle(box, fill=rgb)
    else:
        unit = _UNIT_POLYGONS[shape]  # (V, 2)
        draw.polygon([(x + r * ux, y + r * uy) for ux, uy in unit], fill=rgb)


def _regular(n: int, radius: float = 1.0, phase: float = -math.pi / 2) -> list[tuple[float, float]]:
    return [
        (radius * math.cos(phase + 2 * math.pi * k / n), radius * math.sin(phase + 2 * math.pi * k / n))
        for k in range(n)
    ]


def _star() -> list[tuple[float, float]]:
    outer, inner = _regular(5), _regular(5, STAR_INNER, -math.pi / 2 + math.pi / 5)
    return [p for pair in zip(outer, inner) for p in pair]


def _cross() -> list[tuple[float, float]]:
    a = CROSS_ARM
    return [(-a, -1), (a, -1), (a, -a), (1, -a), (1, a), (a, a), (a, 1), (-a, 1), (-a, a), (-1, a), (-1, -a), (-a, -a)]


# Vertices of a shape of radius 1 centred at (0, 0); y grows downwards. Circle, ring and square are PIL primitives.
_UNIT_POLYGONS: dict[str, list[tuple[float, float]]] = {
    "triangle": [(0.0, -1.0), (1.0, 1.0), (-1.0, 1.0)],
    "diamond": [(0.0, -1.0), (0.8, 0.0), (0.0, 1.0), (-0.8, 0.0)],
    "hexagon": _regular(6),
    "star": _star(),
    "cross": _cross(),
}


# ------------------------------------------------------------------------------------------------ text


@lru_cache(maxsize=8)
def _font(px: int) -> ImageFont.FreeTypeFont:
    if not FONT_PATH.is_file():
        raise InputError(f"{FONT_PATH}: font not found; install it with `apt-get install fonts-dejavu-core`")
    return ImageFont.truetype(str(FONT_PATH), px)


@lru_cache(maxsize=16)
def _font_px(height: float) -> int:
    """The font size (em, pixels) whose capital H is `height * FRAME_SIZE` pixels tall."""
    probe = 200
    x0, y0, x1, y1 = _font(probe).getbbox("H")
    return max(4, round(height * FRAME_SIZE * probe / (y1 - y0)))


@lru_cache(maxsize=4096)
def _text_mask(text: str, px: int) -> Image.Image:
    """The word's ink as an "L" mask, cropped to its ink box."""
    font = _font(px)
    x0, y0, x1, y1 = font.getbbox(text)
    mask = Image.new("L", (max(1, x1 - x0), max(1, y1 - y0)), 0)
    ImageDraw.Draw(mask).text((-x0, -y0), text, fill=255, font=font)
    return mask


@lru_cache(maxsize=4096)
def _text_layer(text: str, px: int, colour: str) -> tuple[Image.Image, Image.Image]:
    """(solid colour image, mask) of one word: pasting an image through a mask is twice as fast as a colour."""
    mask = _text_mask(text, px)
    return Image.new("RGB", mask.size, COLOURS[colour]), mask


def _text_origin(text: OnScreenText, mask: Image.Image) -> tuple[int, int]:
    cx, cy = text.position[0] * FRAME_SIZE, text.position[1] * FRAME_SIZE
    return int(round(cx - mask.width / 2)), int(round(cy - mask.height / 2))
