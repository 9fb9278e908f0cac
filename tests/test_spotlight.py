"""Image spotlight (paper App. I, `media.image_spotlight`): an image as a short video of its sub-images."""

from __future__ import annotations

import json

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


# ------------------------------------------------------------------------------------------------- training


def _wav(path, seconds=1.5, rate=16000):
    """A mono 16-bit sine tone (stdlib `wave`: no media library needed to write it)."""
    import wave

    t = np.arange(round(seconds * rate)) / rate
    samples = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(samples.tobytes())
    return path


def _train_config(tmp, grid, cache="cache"):
    from videosalmonn.training.config import DataConfig, ModelRef, SourceConfig, TrainConfig

    image, audio = tmp / "quadrants.png", _wav(tmp / "tone.wav")
    _quadrants().save(image)
    rows = [
        {"id": "quad", "image": str(image), "prompt": "Which colours are there?", "answer": "Four."},
        {"id": "quad-tone", "image": str(image), "audio": str(audio), "prompt": "What is heard?", "answer": "A tone."},
    ]
    (tmp / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    model = ModelRef("tiny", () if grid is None else (f"media.image_spotlight={grid}",))
    data = DataConfig(sources=(SourceConfig(str(tmp / "m.jsonl")),), feature_cache=str(tmp / cache))
    return TrainConfig(output_dir=str(tmp / "run"), model=model, data=data)


@pytest.fixture(scope="module")
def spotlit_training(tmp_path_factory):
    """A tiny-model training set with `media.image_spotlight=2`, its feature cache built."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from videosalmonn.training.loop import build_model, prepare_data

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("spotlight-train")
    cfg = _train_config(tmp, 2)
    accelerator = Accelerator(cpu=True)
    model, _, tokenizer, itok, featurizer = build_model(cfg, accelerator)
    data = prepare_data(cfg, cfg.model_config(), tokenizer, itok, featurizer, accelerator)
    yield tmp, cfg, accelerator, model, tokenizer, itok, featurizer, data
    AcceleratorState._reset_state(reset_partial_state=True)
    torch.set_num_threads(threads)


def test_training_batch_sees_the_sub_images(spotlit_training, pipes):
    """The training batch of a spotlighted image: grid^2 distinct frames, flagged as a video (not one image
    repeated), the same features cached and on the fly, and the same media tokens as inference."""
    import copy

    from videosalmonn.prompting.templates import prompt_style
    from videosalmonn.training.data import TrainCollator

    _, cfg, _, model, tokenizer, _, featurizer, cached = spotlit_training
    model_cfg = cfg.model_config()
    on_the_fly = copy.copy(cached)
    on_the_fly.cache = None
    collate = TrainCollator(model_cfg, tokenizer, prompt_style(model_cfg.llm.prompt_style), featurizer)
    examples = {}
    for position in range(40):
        example = cached.example(position)
        examples.setdefault((example.index, example.rule), example)
    assert {e.audio is not None for e in examples.values()} == {True, False}
    for example in examples.values():
        raw = on_the_fly.load(example)
        assert raw.visual.frames.shape[0] == 4 and not raw.visual.is_image
        crops = transform_spotlight(load_image(example.visual.path), 2, model_cfg.media.image_size)
        assert torch.equal(raw.visual.frames, crops)  # the four quadrants, in scan order
        assert len({tuple(f.flatten().tolist()) for f in raw.visual.frames}) == 4
        a, b = cached.load(example).cached, collate.features(raw)
        assert not a.is_image and not b.is_image and a.frames == b.frames == 4
        for name in ("visual", "whisper", "beats"):
            x, y = getattr(a, name), getattr(b, name)
            assert (x is None and y is None) or torch.equal(x, y), (example.rule, name)

    pipe = pipes[2]  # inference with the same setting and the same (seeded tiny) weights
    assert all(
        torch.equal(p, q)
        for p, q in zip(model.connector.state_dict().values(), pipe.model.connector.state_dict().values())
    )
    model.eval()
    for example in examples.values():
        for source in (cached, on_the_fly):
            train = collate([source.load(example)])
            features = train.batch.features
            assert features.is_image.tolist() == [False] and features.visual_slots.tolist() == [4]
            assert len({tuple(v.flatten().tolist()) for v in features.visual[0]}) == 4  # the frames' features differ
            request = Request(
                example.instruction,
                image=str(example.visual.path),
                audio=None if example.audio is None else str(example.audio.path),
            )
            batch, counts = pipe.prepare([request], [pipe.load(request)])
            assert not bool(batch.media.is_image[0]) and batch.media.frames.shape[1] == 4
            with torch.no_grad():
                ours, theirs = model.encode(train.batch), pipe.model.encode(batch)
            n = int(theirs.lengths[0])
            assert int(ours.lengths[0]) == n == counts[0] == int(train.batch.prompt.media_mask.sum())
            assert n == (30 if example.audio is None else 3 * 10)  # 4 frames padded to 10 slots, x 3 levels
            torch.testing.assert_close(ours.embeds[0, :n], theirs.embeds[0, :n], atol=1e-5, rtol=1e-5)


def test_cache_built_without_spotlight_is_refused(spotlit_training):
    from videosalmonn.training.cache import visual_key
    from videosalmonn.training.loop import prepare_data
    from videosalmonn.training.mixing import MediaRef

    tmp, cfg, accelerator, _, tokenizer, itok, featurizer, _ = spotlit_training
    off = _train_config(tmp, None, cache="cache-off")
    prepare_data(off, off.model_config(), tokenizer, itok, featurizer, accelerator)  # built with spotlight off
    on = _train_config(tmp, 2, cache="cache-off")
    with pytest.raises(InputError, match=r"stale feature cache.*media\.image_spotlight \(null -> 2\)") as e:
        prepare_data(on, on.model_config(), tokenizer, itok, featurizer, accelerator)
    assert "\n" not in str(e.value)  # one line
    # the keys differ too: an image's features with and without the grid are never taken for each other
    ref = MediaRef("x.png")
    keys = {
        visual_key("sha", ref, True, "?"),
        visual_key("sha", ref, True, "?", 2),
        visual_key("sha", ref, True, "?", 3),
    }
    assert len(keys) == 3 and visual_key("sha", ref, False, "?", 2) == visual_key("sha", ref, False, "?")
