"""Hostile media (issue 11, media rows): a pixel budget before decoding (row 1), the LLM context checked from the
media's duration before decoding (row 3), and a truncated file reported in `Coverage.cut` (row 10)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from functools import partial
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from videosalmonn.config import MediaConfig, ModelConfig
from videosalmonn.connector.multires import media_token_count
from videosalmonn.errors import InputError, MediaError
from videosalmonn.media.clip import load_clip

SHARED_MP4 = Path(__file__).resolve().parents[2] / "shared" / "media" / "4405327307.mp4"
BIG = 9000  # 81 M pixels per frame: over the default budget of 8192 x 8192 = 67 M


def write_big_mov(path: Path, side: int = BIG, n: int = 2) -> Path:
    """A ~20-KB .mov of `n` blank PNG frames of side x side (1-bit frames: cheap to write, 0.2 GB each as RGB)."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("png", rate=1)
        s.width = s.height = side
        s.pix_fmt = "monob"
        for i in range(n):
            frame = av.VideoFrame(side, side, "monob")
            for plane in frame.planes:
                plane.update(bytes(plane.buffer_size))
            frame.pts = i
            for packet in s.encode(frame):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path


def write_sparse_mp4(path: Path, seconds: int) -> Path:
    """A ~2-KB mp4 with two small frames, at 0 s and at `seconds` (a header duration of hours)."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=1)
        s.width = s.height = 32
        s.pix_fmt = "yuv420p"
        for pts in (0, seconds):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            frame.pts = pts
            for packet in s.encode(frame):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path


def write_silent_flac(path: Path, seconds: int, rate: int = 8000) -> Path:
    """A small FLAC of `seconds` of silence (the header states its length)."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("flac", rate=rate, layout="mono")
        block = 1 << 16
        for start in range(0, seconds * rate, block):
            n = min(block, seconds * rate - start)
            frame = av.AudioFrame.from_ndarray(np.zeros((1, n), np.int16), format="s16p", layout="mono")
            frame.sample_rate, frame.pts = rate, start
            for packet in s.encode(frame):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path


def context_of(preset: str = "tiny"):
    from videosalmonn.media.budget import ContextBudget

    cfg = ModelConfig.from_name(preset)
    return cfg, ContextBudget(cfg.llm.max_positions, partial(media_token_count, cfg.connector))


# ------------------------------------------------------------------------------ row 1: decoded-pixel budget


@pytest.mark.parametrize("policy", ["uniform", "official"])
def test_huge_video_frames_refused_before_decoding(tmp_path, policy, monkeypatch):
    path = write_big_mov(tmp_path / "bomb.mov")
    monkeypatch.setattr(av.VideoFrame, "to_rgb", lambda *a, **k: pytest.fail("a frame was converted to RGB"))
    with pytest.raises(MediaError, match=r"bomb\.mov: video frame too large: 9000x9000 .* budget of 67\.1 M"):
        load_clip(MediaConfig(frame_sampling=policy), video=path)


def test_huge_image_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("1", (BIG, BIG)).save(path)  # 10 KB on disk, 81 M pixels
    with pytest.raises(MediaError, match=r"bomb\.png: image too large: 9000x9000 .*media\.max_frame_pixels"):
        load_clip(MediaConfig(), image=path)


def test_pixel_budget_is_configurable_and_checked_per_decoded_frame(tmp_path):
    small = write_big_mov(tmp_path / "small.mov", side=64)
    assert load_clip(MediaConfig(), video=small).frames.shape[0] == 4
    with pytest.raises(MediaError, match="64x64 = 0.0 M pixels, over the decoded-pixel budget of 0.0 M"):
        load_clip(MediaConfig(max_frame_pixels=4000), video=small)
    from videosalmonn.media import video as video_mod

    # a frame whose decoded size differs from the header is checked too (before RGB conversion)
    with pytest.raises(MediaError, match="decoded video frame too large: 64x64"):
        video_mod._checked(small, 4000, lambda f: pytest.fail("converted"))(av.VideoFrame(64, 64, "rgb24"))


def test_pil_decompression_bomb_is_our_error(tmp_path):
    path = tmp_path / "huge.png"
    Image.new("1", (14000, 14000)).save(path)  # 196 M pixels: over PIL's own hard limit (2 x 89 M)
    with pytest.raises(MediaError, match=r"huge\.png: image too large: 196\.0 M pixels, over the .* budget of 67\.1 M"):
        load_clip(MediaConfig(), image=path)
    with pytest.raises(MediaError, match=r"huge\.png: image too large: over .* PIL's hard limit"):
        load_clip(MediaConfig(max_frame_pixels=200_000_000), image=path)


@pytest.mark.slow
def test_pixel_bomb_memory_stays_bounded(tmp_path):
    path = write_big_mov(tmp_path / "bomb.mov", side=16000)
    code = textwrap.dedent(f"""
        import resource
        from videosalmonn.config import MediaConfig
        from videosalmonn.errors import MediaError
        from videosalmonn.media.clip import load_clip
        try:
            load_clip(MediaConfig(), video={str(path)!r})
        except MediaError as e:
            print("refused", e)
        print("rss_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert "refused" in out, out
    assert int(out.split("rss_mb")[1]) < 1500, out


# ------------------------------------------------------------- row 3: the LLM context, before decoding


def test_hours_long_video_refused_before_allocating(tmp_path, monkeypatch):
    path = write_sparse_mp4(tmp_path / "sparse.mp4", 10 * 3600)
    cfg, context = context_of()
    monkeypatch.setattr(av.VideoFrame, "to_rgb", lambda *a, **k: pytest.fail("a frame was decoded"))
    expected = r"sparse\.mp4: 36001\.0 s of media is 216030 media tokens; the LLM takes at most 4096"
    with pytest.raises(InputError, match=expected):
        load_clip(cfg.media, video=path, context=context)
    # the same video fits with --limits official (60 s), and a short span of it fits too
    monkeypatch.undo()
    official = load_clip(cfg.media.__class__(limits="official"), video=path, context=context)
    assert official.coverage.video_seconds == 60
    assert load_clip(cfg.media, video=path, start=0, end=10, context=context).frames.shape[0] == 20


@pytest.mark.slow
def test_pipeline_load_checks_the_context(tmp_path):
    from videosalmonn.pipeline import Pipeline
    from videosalmonn.types import Request

    pipe = Pipeline.__new__(Pipeline)
    pipe.cfg = ModelConfig.from_name("tiny")
    with pytest.raises(InputError, match="LLM takes at most 4096"):
        pipe.load(Request("what?", video=str(write_sparse_mp4(tmp_path / "s.mp4", 3600))))


@pytest.mark.slow
def test_long_flac_refused_from_its_header(tmp_path, monkeypatch):
    path = write_silent_flac(tmp_path / "long.flac", 20 * 60)  # 20 min: over tiny's ~11 min of context
    cfg, context = context_of()
    from videosalmonn.media import audio as audio_mod

    monkeypatch.setattr(audio_mod, "_decode_mono", lambda *a, **k: pytest.fail("decoded"))
    with pytest.raises(InputError, match=r"long\.flac: .*1200\.0 s.* LLM takes at most 4096"):
        load_clip(cfg.media, audio=path, context=context)


@pytest.mark.slow
def test_audio_decoding_stops_past_the_limit(tmp_path, monkeypatch):
    """Without a stated length (or a lying one), decoding stops once past the limit instead of decoding it all."""
    path = write_silent_flac(tmp_path / "long.flac", 20 * 60)
    from videosalmonn.media import audio as audio_mod

    decoded = []
    real = audio_mod._to_planar_float64
    monkeypatch.setattr(audio_mod, "_to_planar_float64", lambda f: decoded.append(f.samples) or real(f))
    with pytest.raises(InputError, match=r"long\.flac: audio lasts more than 60\.0 s"):
        audio_mod.load_audio(path, max_seconds=60)
    assert sum(decoded) < 70 * 8000


# ------------------------------------------------------------------------- row 10: truncated files


@pytest.fixture(scope="module")
def half_mp4(tmp_path_factory) -> Path:
    if not SHARED_MP4.exists():
        pytest.skip(f"{SHARED_MP4} not present")
    path = tmp_path_factory.mktemp("trunc") / "half.mp4"
    data = SHARED_MP4.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["uniform", "official"])
def test_truncated_mp4_cut_is_reported(half_mp4, policy):
    clip = load_clip(MediaConfig(frame_sampling=policy), video=half_mp4)
    cut = "\n".join(clip.coverage.cut)
    assert "audio ends at 12.05 s of the 23.73 s the header states (truncated file?)" in cut
    assert "video frames end at 12.01 s of the 23.69 s the header states (truncated file?)" in cut


@pytest.mark.slow
def test_whole_mp4_has_no_truncation_cut(tmp_path):
    if not SHARED_MP4.exists():
        pytest.skip(f"{SHARED_MP4} not present")
    path = shutil.copy(SHARED_MP4, tmp_path / "whole.mp4")
    assert load_clip(MediaConfig(), video=path).coverage.cut == []
    assert os.path.getsize(path) > 0
