"""`load_video` transforms decoded frames in bounded groups: the same frames, bit for bit, as one call per frame."""

from __future__ import annotations

import hashlib
import threading

import av
import numpy as np
import pytest
import torch
from conftest import DEMO_VIDEO, needs_media

from videosalmonn.media import video as V


def per_frame(path, size: int = V.DEFAULT_SIZE, end: float | None = None) -> torch.Tensor:
    """The previous `load_video`: one `transform_frames` call per decoded frame."""

    def convert(frame: av.VideoFrame) -> torch.Tensor:
        return V.transform_frames(torch.from_numpy(V._rgb(frame))[None], size)[0]

    return V._sample(path, "official", None, convert, torch.stack, end=end).frames


def sha(frames: torch.Tensor) -> list[str]:
    return [hashlib.sha256(f.numpy().tobytes()).hexdigest() for f in frames]


def counting_transform(monkeypatch) -> list[int]:
    """Patch `transform_frames` to record the number of frames of every call."""
    calls: list[int] = []
    transform = V.transform_frames

    def counted(frames, size=V.DEFAULT_SIZE):
        calls.append(len(frames))
        return transform(frames, size)

    monkeypatch.setattr(V, "transform_frames", counted)
    return calls


@needs_media
@pytest.mark.slow
def test_demo_clip_grouped_equals_per_frame(monkeypatch):
    reference = per_frame(DEMO_VIDEO)  # (48, 3, 224, 224)
    calls = counting_transform(monkeypatch)
    grouped = V.load_video(DEMO_VIDEO, "official").frames
    assert calls == [32, 16]  # 48 frames: two calls instead of 48
    assert grouped.shape == (48, 3, 224, 224) and sha(grouped) == sha(reference)


@needs_media
def test_group_boundaries_inside_clips(monkeypatch):
    reference = per_frame(DEMO_VIDEO, 64, end=6.0)  # 6 clips, 12 frames
    calls = counting_transform(monkeypatch)
    monkeypatch.setattr(V, "TRANSFORM_GROUP_FRAMES", 5)  # a group ends between the two frames of a clip
    assert torch.equal(V.load_video(DEMO_VIDEO, "official", size=64, end=6.0).frames, reference)
    assert calls == [5, 5, 2]


@needs_media
def test_groups_are_bounded_by_bytes(monkeypatch):
    reference = per_frame(DEMO_VIDEO, 32, end=6.0)
    calls = counting_transform(monkeypatch)
    monkeypatch.setattr(V, "TRANSFORM_CHUNK_ELEMENTS", 3 * 640 * 360 * 3)  # three 640x360 RGB frames
    assert torch.equal(V.load_video(DEMO_VIDEO, "official", size=32, end=6.0).frames, reference)
    assert calls == [3, 3, 3, 3]


def rgb_frame(h: int, w: int, seed: int) -> av.VideoFrame:
    pixels = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return av.VideoFrame.from_ndarray(pixels, format="rgb24")


def test_a_size_change_starts_a_new_group(monkeypatch):
    calls = counting_transform(monkeypatch)
    groups = V._TransformGroups(16)
    frames = [rgb_frame(24, 40, 0), rgb_frame(24, 40, 1), rgb_frame(30, 20, 2), rgb_frame(24, 40, 3)]
    handles = [groups.add(f) for f in frames]
    out = groups.stack([handles[3], handles[0], handles[2], handles[0]])  # any order, repeats (filled slots)
    groups.close()
    assert calls == [2, 1, 1]
    expected = [V.transform_frames(f.to_ndarray()[None], 16)[0] for f in frames]
    for got, i in zip(out, [3, 0, 2, 0]):
        assert torch.equal(got, expected[i])


@pytest.mark.parametrize("policy", ["official", "uniform"])
def test_fixture_clip_grouped_equals_transform_of_samples(policy):
    from test_video import CLIP2S  # the 2-s fixture clip

    loaded = V.load_video(CLIP2S, policy, size=64).frames
    assert torch.equal(loaded, V.transform_frames(V.sample_frames(CLIP2S, policy).frames, 64))


def transform_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("transform_frames")]


def test_the_worker_thread_ends_with_load_video(monkeypatch):
    from test_video import CLIP2S

    assert transform_threads() == []
    V.load_video(CLIP2S, "official", size=32)
    assert transform_threads() == []

    def broken(*args, **kwargs):
        raise RuntimeError("after decoding")

    monkeypatch.setattr(V, "_result", broken)
    with pytest.raises(RuntimeError, match="after decoding"):
        V.load_video(CLIP2S, "official", size=32)
    assert transform_threads() == []
