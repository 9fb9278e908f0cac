"""Image spotlight (paper App. I, `media.image_spotlight`): an image as a short video of its sub-images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from videosalmonn import Pipeline
from videosalmonn.config import ConfigError, MediaConfig, ModelConfig
from videosalmonn.connector.multires import media_token_count
from videosalmonn.errors import InputError, MediaError
from videosalmonn.estimate import estimate
from videosalmonn.media.clip import image_frames, load_clip
from videosalmonn.media.image import load_image, spotlight_boxes, transform_image, transform_spotlight
from videosalmonn.types import Request

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]  # top left, top right, bottom left, bottom right


def _quadrants(w=64, h=48) -> Image.Image:
    """A synthetic image whose four quadrants are solid, distinct colours."""
    a = np.zeros((h, w, 3), dtype=np.uint8)
    a[: h // 2, : w // 2], a[: h // 2, w // 2 :] = COLOURS[0], COLOURS[1]
    a[h // 2 :, : w // 2], a[h // 2 :, w // 2 :] = COLOURS[2], COLOURS[3]
    return Image.fromarray(a)


@pytest.fixture
def quadrants_png(tmp_path):
    path = tmp_path / "quadrants.png"
    _quadrants().save(path)
    return path


@pytest.mark.parametrize("size,grid", [((64, 48), 2), ((100, 70), 3), ((7, 5), 5), ((1, 1), 1)])
def test_boxes_tile_the_image_row_by_row(size, grid):
    w, h = size
    boxes = spotlight_boxes(w, h, grid)
    assert len(boxes) == grid * grid
    cover = np.zeros((h, w), dtype=int)
    for left, top, right, bottom in boxes:
        assert right > left and bottom > top
        cover[top:bottom, left:right] += 1
    assert (cover == 1).all()  # every pixel in exactly one sub-image
    tops_lefts = [(top, left) for left, top, _, _ in boxes]
    assert tops_lefts == sorted(tops_lefts)  # scan order: top left to bottom right, row by row


def test_image_too_small_for_the_grid():
    with pytest.raises(ValueError, match="3x3"):
        spotlight_boxes(2, 10, 3)


def test_crops_are_the_quadrants_in_scan_order():
    img = _quadrants()
    frames = transform_spotlight(img, 2, 32)
    assert frames.shape == (4, 3, 32, 32)
    for frame, colour in zip(frames, COLOURS):
        solid = Image.new("RGB", (32, 24), colour)
        assert torch.equal(frame, transform_image(solid, 32)[0])  # each frame is exactly its solid quadrant


def test_load_clip_gives_a_short_video(quadrants_png):
    cfg = MediaConfig(image_spotlight=3, image_size=28)
    clip = load_clip(cfg, image=quadrants_png)
    assert clip.frames.shape == (9, 3, 28, 28) and not clip.is_image
    assert clip.frame_times == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0]
    assert clip.coverage.frames == 9 and any("spotlight: 3x3" in n for n in clip.coverage.notes)
    img = load_image(quadrants_png)
    for frame, box in zip(clip.frames, spotlight_boxes(img.width, img.height, 3)):
        assert torch.equal(frame, transform_image(img.crop(box), 28)[0])
    assert image_frames(cfg) == (9, False)


def test_default_off_is_the_released_image_path(quadrants_png):
    cfg = MediaConfig()
    assert cfg.image_spotlight is None and image_frames(cfg) == (1, True)
    clip = load_clip(cfg, image=quadrants_png)
    assert clip.is_image and clip.frame_times == [0.0] and clip.coverage.notes == []
    assert torch.equal(clip.frames, transform_image(load_image(quadrants_png)))


def test_config_checks_and_small_images(tmp_path):
    with pytest.raises(ConfigError, match="image_spotlight"):
        ModelConfig.from_name("tiny", ["media.image_spotlight=0"])
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (2, 2)).save(tiny)
    with pytest.raises(MediaError, match="image_spotlight=3"):
        load_clip(MediaConfig(image_spotlight=3), image=tiny)


@pytest.fixture(scope="module")
def pipes():
    return {grid: Pipeline.from_pretrained("tiny", [f"media.image_spotlight={grid}"], "cpu") for grid in ("null", 2, 4)}


@pytest.mark.parametrize("grid", ["null", 2, 4])
def test_token_count_is_what_the_model_produces(pipes, quadrants_png, grid):
    pipe = pipes[grid]
    request = Request("What is written here?", image=str(quadrants_png))
    clip = pipe.load(request)
    batch, counts = pipe.prepare([request], [clip])
    with torch.no_grad():
        out = pipe.model.encode(batch)
    assert int(out.lengths[0]) == counts[0] == int(batch.prompt.media_mask.sum())
    frames, is_image = image_frames(pipe.cfg.media)
    assert counts[0] == media_token_count(pipe.cfg.connector, frames, is_image, 0)
    assert estimate(pipe.cfg, 0, image=True, new_tokens=1).tokens["media"] == counts[0]
    expected = {"null": 60 * 3, 2: 10 * 3, 4: 20 * 3}[grid]  # image: 60 slots; 4 or 16 frames padded to 10 or 20
    assert counts[0] == expected


def test_outputs_unchanged_when_off(pipes, quadrants_png):
    """Off (default), an image answers exactly as the released path: one frame repeated over image_slots."""
    pipe = pipes["null"]
    request = Request("What is this?", image=str(quadrants_png))
    batch, _ = pipe.prepare([request], [pipe.load(request)])
    reference = load_clip(MediaConfig(), image=quadrants_png)
    ref_batch, _ = pipe.prepare([request], [reference])
    with torch.no_grad():
        assert torch.equal(pipe.model(batch).logits, pipe.model(ref_batch).logits)
    assert bool(batch.media.is_image[0]) and batch.media.frames.shape[1] == 1


def test_context_check_counts_the_sub_images(quadrants_png):
    pipe = Pipeline.from_pretrained("tiny", ["media.image_spotlight=40", "llm.max_positions=512"], "cpu")
    with pytest.raises(InputError, match="media tokens"):  # 1600 frames -> 4800 tokens, refused before decoding
        pipe.load(Request("?", image=str(quadrants_png)))
