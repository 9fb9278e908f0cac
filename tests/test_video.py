"""videosalmonn.media.video: official/uniform frame sampling, the official frame transform, bad input.

Golden parity uses the official run's decode of the demo video (golden README §4 case `av`, §6); every other
check compares the seek/skip sampler with an independent decode-everything reference on generated media.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from conftest import GOLDEN, needs_golden

from videosalmonn.errors import MediaError
from videosalmonn.media import video as V
from videosalmonn.media.timeline import OFFICIAL_MAX_VIDEO_SECONDS, SECONDS_PER_SLOT

_spec = importlib.util.spec_from_file_location("make_fixtures", Path(__file__).with_name("make_fixtures.py"))
fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures)

GOLDEN_VIDEO = GOLDEN / "media" / "4405327307.mp4"
CLIP2S = fixtures.CLIP2S
SHORT_GOP = {"threads": "1", "g": "5", "bf": "2"}  # many keyframes: the sampler seeks
OPEN_GOP = {"threads": "1", "g": "12", "x264-params": "open-gop=1:bframes=3"}


# ------------------------------------------------------------------------------------------ reference


def decode_everything(path, policy, max_seconds=None) -> np.ndarray:
    """Independent reference: decode and convert EVERY frame, then pick by the documented rules."""
    info = V.probe_video(path)
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        step = V._frame_step(s)
        frames = {}
        for k, f in enumerate(c.decode(s)):
            frames[f.pts if f.pts is not None else (s.start_time or 0) + k * step] = f.to_rgb().to_ndarray()
    pts = sorted(frames)
    tb, start, d = info.time_base, info.start_pts, info.duration_exact
    picked = []
    if policy == "official":
        clips = V.official_clip_times(d)
        if max_seconds is not None and d > max_seconds:
            clips = clips[: max(1, math.floor(max_seconds))]
        for s_, e_ in clips:
            inside = [p for p in pts if math.ceil(s_ / tb) + start <= p < math.ceil(e_ / tb) + start]
            before = [p for p in pts if p < math.ceil(s_ / tb) + start]
            inside = inside or [before[-1] if before else pts[0]]
            picked += [inside[0], inside[-1]]
    else:
        span = d if max_seconds is None else min(d, Fraction(max_seconds))
        for k in range(max(1, math.ceil(span * 2))):
            shown = [p for p in pts if (p - start) * tb <= Fraction(k, 2)]
            picked.append(shown[-1] if shown else pts[0])
    return np.stack([frames[p] for p in picked])


def square_centres(frames: torch.Tensor) -> list[float]:
    """x centre of the white square in each (T, H, W, 3) frame."""
    white = (frames.numpy() > 200).all(-1)  # (T, H, W)
    return [float(np.nonzero(w)[1].mean()) for w in white]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Odd videos, generated once per module."""
    d = tmp_path_factory.mktemp("media")
    w = fixtures.write_video
    return {
        "short_gop.mp4": w(d / "short_gop.mp4", n_frames=120, fps=30, options=SHORT_GOP),
        "open_gop.mp4": w(d / "open_gop.mp4", n_frames=120, fps=30, options=OPEN_GOP),
        "short_gop.mkv": w(d / "short_gop.mkv", n_frames=90, fps=30, options=SHORT_GOP),
        "offset.ts": w(
            d / "offset.ts", pts_ms=[1000 + 40 * i for i in range(60)], options=SHORT_GOP, container_format="mpegts"
        ),
        "mpeg4.avi": w(d / "mpeg4.avi", n_frames=40, codec="mpeg4", options={"bf": "2"}),
        "vfr.mp4": w(d / "vfr.mp4", pts_ms=[0, 40, 80, 500, 540, 2900, 2940, 3000, 3500]),
        "raw.h264": w(d / "raw.h264", n_frames=40, container_format="h264"),
        "one_frame.mp4": w(d / "one_frame.mp4", n_frames=1),
        "tiny.mp4": w(d / "tiny.mp4", size=(8, 8), n_frames=30),
        "uhd.mp4": w(
            d / "uhd.mp4", size=(3840, 2160), n_frames=2, fps=2, options={"threads": "1", "preset": "ultrafast"}
        ),
    }


# --------------------------------------------------------------------------------- golden (official run)


@pytest.fixture(scope="module")
def golden_official():
    if not GOLDEN_VIDEO.is_file():
        pytest.skip(f"golden data not found at {GOLDEN}")
    return V.sample_frames(GOLDEN_VIDEO, "official")


@needs_golden
def test_probe_demo_video():
    info = V.probe_video(GOLDEN_VIDEO)
    assert info.duration == pytest.approx(23.690333, abs=1e-6) and info.duration_source == "stream"
    assert info.fps == pytest.approx(29.97, abs=1e-3)
    assert (info.frame_count, info.width, info.height, info.has_audio) == (710, 640, 360, True)


@needs_golden
def test_golden_clip_bookkeeping(golden_official, golden_json):
    clips = golden_json["cases"]["av"]["clips"]
    assert len(golden_official.clips) == len(clips) == 24
    for ours, theirs in zip(golden_official.clips, clips, strict=True):
        assert ours.start == pytest.approx(theirs["start_sec"], abs=1e-9)
        assert ours.end == pytest.approx(theirs["end_sec"], abs=1e-9)
        assert (ours.n_frames, ours.first_pts, ours.last_pts) == (
            theirs["n_frames"],
            theirs["first_pts"],
            theirs["last_pts"],
        )
    assert golden_official.filled == () and golden_official.cut is None


@needs_golden
def test_golden_raw_frames_bit_identical(golden_official, golden_json, golden_tensors):
    g = golden_tensors("av")
    frames = golden_official.frames  # (48, 360, 640, 3)
    chw = frames.permute(0, 3, 1, 2).contiguous()
    sha = [hashlib.sha256(f.numpy().tobytes()).hexdigest() for f in chw]
    assert sha == golden_json["cases"]["av"]["raw_frame_sha256"]
    assert torch.equal(chw[0], g["raw_frame0_u8"])
    assert torch.equal(frames.double().sum((1, 2)), g["raw_frames_sum_f64"])


@needs_golden
def test_golden_transform(golden_official, golden_tensors):
    g = golden_tensors("av")
    x = V.transform_frames(golden_official.frames)  # (48, 3, 224, 224)
    assert x.shape == (48, 3, 224, 224) and x.dtype == torch.float32
    sel = x[g["frames_sel_index"]]
    assert (sel - g["frames_sel"]).abs().max() < 1e-5  # measured 4.1e-6
    torch.testing.assert_close(x.double().sum((2, 3)), g["frames_sum_f64"], rtol=0, atol=0.02)  # 6.9e-3


@needs_golden
@pytest.mark.slow
def test_golden_sampler_equals_decode_everything():
    for policy in ("official", "uniform"):
        r = V.sample_frames(GOLDEN_VIDEO, policy)
        assert r.decoder == "index" and r.decoded_frames < 710  # skipped non-ref frames
        assert np.array_equal(r.frames.numpy(), decode_everything(GOLDEN_VIDEO, policy))


@needs_golden
def test_official_limit_keeps_short_video():
    r = V.sample_frames(GOLDEN_VIDEO, "official", max_seconds=OFFICIAL_MAX_VIDEO_SECONDS)
    assert len(r.times) == 48 and r.cut is None and r.seconds_kept == pytest.approx(23.690333, abs=1e-6)


# ------------------------------------------------------------------------------------ 2-second fixture


def test_fixture_clip_probe():
    info = V.probe_video(CLIP2S)
    assert (info.duration, info.fps, info.frame_count, info.width, info.height) == (2.0, 25.0, 50, 128, 96)
    assert info.has_audio and info.start_time == 0.0 and info.codec == "h264"
    assert CLIP2S.stat().st_size < 100_000


def test_fixture_official_frames():
    r = V.sample_frames(CLIP2S, "official")
    assert r.frames.shape == (4, 96, 128, 3) and r.frames.dtype == torch.uint8
    assert r.times == pytest.approx((0.0, 0.96, 1.0, 1.96))  # first/last of each clip
    assert [c.n_frames for c in r.clips] == [25, 25]
    xs = square_centres(r.frames)
    assert xs == sorted(xs) and xs[0] < xs[-1]
    assert np.array_equal(r.frames.numpy(), decode_everything(CLIP2S, "official"))


def test_fixture_uniform_frames():
    r = V.sample_frames(CLIP2S, "uniform")
    slots = [k * SECONDS_PER_SLOT for k in range(4)]  # 0, 0.5, 1.0, 1.5
    assert len(r.times) == 4
    for t, slot in zip(r.times, slots, strict=True):  # the frame shown at the slot
        assert slot - 1 / 25 < t <= slot + 1e-9
    xs = square_centres(r.frames)
    assert xs == sorted(xs) and xs[0] < xs[-1]
    assert np.array_equal(r.frames.numpy(), decode_everything(CLIP2S, "uniform"))


def test_load_video_equals_transform_of_samples():
    for policy in ("official", "uniform"):
        loaded = V.load_video(CLIP2S, policy, size=64)
        assert loaded.frames.shape == (4, 3, 64, 64) and loaded.frames.dtype == torch.float32
        assert torch.equal(loaded.frames, V.transform_frames(V.sample_frames(CLIP2S, policy).frames, 64))


def test_transform_is_chunk_independent(monkeypatch):
    frames = V.sample_frames(CLIP2S, "official").frames
    whole = V.transform_frames(frames)
    monkeypatch.setattr(V, "TRANSFORM_CHUNK_ELEMENTS", 1)  # one frame per chunk
    assert torch.equal(V.transform_frames(frames), whole)


def test_transform_rejects_wrong_layout():
    with pytest.raises(ValueError, match="uint8"):
        V.transform_frames(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="uint8"):
        V.transform_frames(torch.zeros(2, 8, 8, 3))


def test_bad_arguments():
    with pytest.raises(ValueError, match="policy"):
        V.sample_frames(CLIP2S, "paper")
    with pytest.raises(ValueError, match="max_seconds"):
        V.sample_frames(CLIP2S, "uniform", max_seconds=0)


# ------------------------------------------------------------------------------------ clip layout, cuts


@pytest.mark.parametrize(
    "duration, expected",
    [
        (Fraction(710710, 30000), 24),
        (Fraction(3, 10), 1),
        (Fraction(2), 2),
        (Fraction(5, 2), 3),
        (Fraction(2) + Fraction(1, 10**7), 2),  # within pytorchvideo's 1e-6 tolerance: no extra clip
    ],
)
def test_official_clip_times(duration, expected):
    clips = V.official_clip_times(duration)
    assert len(clips) == expected
    assert all(e - s == 1 for s, e in clips) and clips[0][0] == 0
    assert all(b[0] == a[1] for a, b in zip(clips[:-2], clips[1:-1], strict=True))  # back to back
    if duration >= 1:
        assert abs(clips[-1][1] - duration) < 1e-6  # last clip backpadded


def test_max_seconds_cut_is_reported(media):
    path = media["short_gop.mp4"]  # 4.0 s
    r = V.sample_frames(path, "official", max_seconds=2.5)
    assert len(r.times) == 4 and r.seconds_kept == 2.0 and max(r.times) < 2.0
    assert r.cut == "video after 2.00 s of 4.00 s not sampled (max_seconds=2.5)"
    r = V.sample_frames(path, "uniform", max_seconds=1.3)
    assert len(r.times) == 3 and r.seconds_kept == pytest.approx(1.3) and "1.30 s of 4.00 s" in r.cut
    for policy in ("official", "uniform"):
        r = V.sample_frames(path, policy, max_seconds=4.0)
        assert r.cut is None and len(r.times) == 8 and r.seconds_kept == 4.0


def test_max_seconds_stops_decoding_early(tmp_path):
    path = fixtures.write_video(
        tmp_path / "long.mp4", size=(16, 16), n_frames=600, fps=30, options={"threads": "1", "g": "30"}
    )  # 20 s
    r = V.sample_frames(path, "official", max_seconds=3)
    assert len(r.times) == 6 and "3.00 s of 20.00 s" in r.cut
    assert r.decoded_frames <= 3 * 30 + 10  # nothing after the limit


# ------------------------------------------------------------------------------ exactness on odd media


@pytest.mark.parametrize(
    "name",
    [
        "short_gop.mp4",
        "open_gop.mp4",
        "short_gop.mkv",
        "offset.ts",
        "mpeg4.avi",
        "vfr.mp4",
        "raw.h264",
        "one_frame.mp4",
        "tiny.mp4",
    ],
)
@pytest.mark.parametrize("policy", ["official", "uniform"])
@pytest.mark.parametrize("max_seconds", [None, 1.3])
def test_sampler_equals_decode_everything(media, name, policy, max_seconds):
    r = V.sample_frames(media[name], policy, max_seconds=max_seconds)
    ref = decode_everything(media[name], policy, max_seconds)
    assert r.frames.shape == ref.shape and np.array_equal(r.frames.numpy(), ref)
    assert len(r.times) == len(ref)
    if policy == "uniform":  # official: the backpadded last clip overlaps the one before
        assert list(r.times) == sorted(r.times)


def test_short_gops_are_skipped_by_seeking(media):
    r = V.sample_frames(media["short_gop.mp4"], "official")  # 120 frames, keyframe every 5
    assert r.decoder == "index" and r.decoded_frames < 40


def test_stream_start_offset(media):
    r = V.sample_frames(media["offset.ts"], "uniform")  # first frame at 1.0 s
    assert r.info.start_time == pytest.approx(1.0) and r.info.duration == pytest.approx(2.4)
    assert r.times[0] == 0.0 and len(r.times) == 5


def test_variable_frame_rate_gap_is_filled_not_shifted(media):
    r = V.sample_frames(media["vfr.mp4"], "official")  # no frame in [1, 2) s
    assert r.clips[1].filled and r.clips[1].n_frames == 0 and r.filled == (2, 3)
    assert r.times[2] == r.times[3] == pytest.approx(0.54)  # the frame shown at 1.0 s
    assert r.times[4] == pytest.approx(2.9)  # later clips keep their place
    assert any("clip 1" in n for n in r.notes)
    u = V.sample_frames(media["vfr.mp4"], "uniform")
    assert u.times[:6] == pytest.approx((0.0, 0.5, 0.54, 0.54, 0.54, 0.54))  # held through the gap


def test_raw_stream_without_timestamps(media):
    r = V.sample_frames(media["raw.h264"], "uniform")
    assert r.decoder == "sequential" and any("no timestamps" in n for n in r.notes)
    assert r.info.duration == pytest.approx(1.6) and r.info.duration_source == "frames"
    assert r.times == pytest.approx((0.0, 0.48, 1.0, 1.48))  # 25 fps assumed


def test_single_frame_video(media):
    r = V.sample_frames(media["one_frame.mp4"], "official")
    assert r.frames.shape[0] == 2 and torch.equal(r.frames[0], r.frames[1]) and r.times == (0.0, 0.0)
    assert r.clips[0].n_frames == 1 and r.filled == ()
    assert V.sample_frames(media["one_frame.mp4"], "uniform").frames.shape[0] == 1


def test_tiny_frames(media):
    r = V.load_video(media["tiny.mp4"], "official")
    assert r.frames.shape == (4, 3, 224, 224) and torch.isfinite(r.frames).all()
    assert r.info.has_audio is False


def test_uhd_frames(media):
    r = V.sample_frames(media["uhd.mp4"], "uniform")  # 2 frames, 1.0 s
    assert r.frames.shape == (2, 2160, 3840, 3)
    x = V.load_video(media["uhd.mp4"], "uniform")
    assert torch.equal(x.frames, V.transform_frames(r.frames))


# ------------------------------------------------------------------------------------------ bad input


def _zeroed_packets(src: Path, dst: Path) -> Path:
    """Same container layout, but every video packet is zeros: demuxes fine, decodes to nothing."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        ins = inp.streams.video[0]
        outs = out.add_stream_from_template(ins)
        for pkt in inp.demux(ins):
            if pkt.size:
                junk = av.Packet(bytes(pkt.size))
                junk.pts, junk.dts, junk.time_base, junk.stream = pkt.pts, pkt.dts, pkt.time_base, outs
                out.mux(junk)
    return dst


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as out:
        s = out.add_stream("pcm_s16le", rate=16000)
        s.layout = "mono"
        f = av.AudioFrame.from_ndarray(np.zeros((1, 1600), np.int16), format="s16", layout="mono")
        f.sample_rate = 16000
        out.mux(s.encode(f))
        out.mux(s.encode())
    return path


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, media):
    d = tmp_path_factory.mktemp("bad")
    (d / "empty.mp4").write_bytes(b"")
    (d / "garbage.mp4").write_bytes(np.random.default_rng(0).bytes(50_000))
    (d / "notes.txt").write_text("not a video\n" * 50)  # FFmpeg's tty demuxer reads it
    whole = CLIP2S.read_bytes()
    (d / "truncated.mp4").write_bytes(whole[: len(whole) // 2])  # index (moov) at the end: lost
    os.mkfifo(d / "fifo.mp4")
    return {
        "missing": (d / "missing.mp4", "file not found"),
        "directory": (d, "is a directory"),
        "empty": (d / "empty.mp4", "file is empty"),
        "garbage": (d / "garbage.mp4", "not a readable video file"),
        "text": (d / "notes.txt", "not a video file"),
        "truncated": (d / "truncated.mp4", "not a readable video file"),
        "fifo": (d / "fifo.mp4", "not a regular file"),
        "no video stream": (_audio_only(d / "tone.wav"), "has no video stream"),
        "no decodable frame": (_zeroed_packets(media["short_gop.mkv"], d / "zeros.mkv"), "no decodable frame"),
    }


@pytest.mark.parametrize(
    "case",
    ["missing", "directory", "empty", "garbage", "text", "truncated", "fifo", "no video stream", "no decodable frame"],
)
def test_bad_input_is_one_line_media_error(bad_files, case):
    path, problem = bad_files[case]
    with pytest.raises(MediaError) as e:
        V.sample_frames(path, "official")
    assert problem in str(e.value) and str(path) in str(e.value) and "\n" not in str(e.value)
    if case != "no decodable frame":  # probing does not decode
        with pytest.raises(MediaError, match=problem):
            V.probe_video(path)
