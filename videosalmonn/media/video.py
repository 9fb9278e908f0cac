"""Video file -> sampled RGB frames -> EVA-ViT input (spec §1.2, §1.3).

Two sampling policies put one frame on every 0.5-s slot of the timeline (`timeline.SECONDS_PER_SLOT`):

    official  what the released checkpoint saw (pytorchvideo 0.1.5 `EncodedVideo` pyav +
              `UniformClipSampler(clip_duration=1, backpad_last=True)` + `UniformTemporalSubsample(2)`):
              the FIRST and the LAST decoded frame of every 1-s clip; the last clip is shifted back to end
              exactly at the duration.

                  clips  [0,1)          [1,2)          ...   [d-1, d)      (backpadded)
                  frames  f0 ...... f29  f30 ..... f59  ...   f681 .. f709  (29.97 fps: 0 s and 0.967 s)

    uniform   what the paper says (true 2 Hz): at t = 0, 0.5, 1.0, ... < duration, the frame being
              displayed at t (the last frame with pts <= t).

All times are seconds from the video stream's start (`stream.start_time`), as in pytorchvideo.

Decoding is exact and cheap (the result equals "decode every frame, then pick"):
1. the frame timestamps come from demuxing packets, not from decoding;
2. the frames to keep are chosen from those timestamps (a pure function, `official_clip_times` & co.);
3. only the chosen frames are decoded in full and converted to RGB: packets of frames nobody asked for are
   decoded with `skip_frame="NONREF"` (a non-reference frame cannot change any other frame), and whole GOPs
   with nothing to keep are skipped by seeking to the keyframe before the next chosen frame.
Any disagreement between the packet index and the decoder (missing timestamps, a chosen frame that never
comes out, a frame the index does not know, an imprecise seek) falls back to decoding every frame in order.

Decisions that differ from the official code, all reported in `SampledVideo`:
* an official clip without a decodable frame is *not* skipped (skipping shifts every later frame by 1 s);
  both of its slots get the frame displayed at the clip start, recorded in `filled` and `notes`;
* `max_seconds` cuts are reported in `cut` (official: `collate` keeps the first 60 clips silently);
  `max_duration` (a `budget.DurationLimit`) refuses a longer video instead: from the header duration, or, when
  the header states none (a raw .h264 stream), as soon as an indexed frame starts past it (nothing kept);
* the duration is the header duration of the video stream; pytorchvideo also subtracts `start_pts` from it,
  which only matters for streams that do not start at 0 (e.g. MPEG-TS) and shortens their timeline.
  Without a stream duration we use the container's, then the end of the last frame (`duration_source`).

Example:
    video = load_video("clip.mp4", "official", max_seconds=OFFICIAL_MAX_VIDEO_SECONDS)
    video.frames    # (T, 3, 224, 224) float32 EVA-ViT input, T = 2 x number of 1-s clips
    video.times     # (T,) seconds: (0.0, 0.967, 1.001, 1.969, ...) for 29.97 fps
    video.cut       # None, or "video after 60.00 s of 75.30 s not sampled (max_seconds=60)"

    stream = stream_video("long.mp4", "official")   # the same frames, chosen but not decoded yet
    for batch in stream.batches(32):                  # (<= 32, 3, 224, 224) float32, decoded as they are asked for
        ...
    stream.sampled                                    # the SampledVideo, without frames
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import av.error
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from videosalmonn.errors import MediaError
from videosalmonn.media.budget import DEFAULT_MAX_FRAME_PIXELS, DurationLimit, as_limit, check_frame_pixels
from videosalmonn.media.files import check_file
from videosalmonn.media.timeline import IMAGE_MEAN, IMAGE_STD, SECONDS_PER_SLOT, VIDEO_FPS, seconds_to_slots

Policy = Literal["official", "uniform"]
POLICIES = ("official", "uniform")

CLIP_SECONDS = 1  # official UniformClipSampler(clip_duration=1)
FRAMES_PER_CLIP = round(CLIP_SECONDS * VIDEO_FPS)  # official UniformTemporalSubsample(2): first and last frame
CLIP_EPS = 1e-6  # pytorchvideo UniformClipSampler's "same end" tolerance
DEFAULT_SIZE = 224  # EVA-ViT input side
FALLBACK_FPS = 25  # only for streams whose frames carry no timestamp at all
SEEK_MIN_PACKETS = 12  # seek only when it skips at least this many packets
SCAN_MARGIN_SECONDS = 2  # index this far past the last needed time (for `filled`)
TRUNCATION_TOLERANCE_SECONDS = SECONDS_PER_SLOT  # frames ending this much before the header says: a cut-off file
TRANSFORM_CHUNK_ELEMENTS = 2**25  # float32 elements per F.interpolate call (128 MB)
TRANSFORM_GROUP_FRAMES = 32  # load_video: decoded frames transformed together (one call instead of one each)
# Containers whose demuxer seeks through an index to an exact keyframe; others are decoded in order.
SEEKABLE_FORMATS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"})
# FFmpeg demuxers that turn non-video files into pictures (`tty` renders any .txt file as text frames).
NOT_VIDEO_FORMATS = frozenset({"tty"})


# ----------------------------------------------------------------------------------------------- values


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a file's first video stream."""

    path: str
    duration: float  # seconds: stream header duration (fallbacks: see duration_source)
    duration_source: str  # "stream", "container" (whole file) or "frames" (end of the last frame)
    fps: float  # average frame rate; 0.0 if unknown
    width: int
    height: int
    has_audio: bool
    frame_count: int | None  # from the header; None if the header does not say
    codec: str
    start_time: float  # seconds: first pts of the stream; every sampled time is relative to it
    time_base: Fraction = field(repr=False)
    start_pts: int = field(repr=False)
    duration_exact: Fraction = field(repr=False)  # `duration` without rounding (clip boundaries need it)


@dataclass(frozen=True)
class ClipInfo:
    """Bookkeeping of one official 1-s clip (matches golden.json `cases.av.clips`)."""

    start: float  # seconds (the last clip is backpadded: it may start at a fraction)
    end: float
    n_frames: int  # decoded frames with pts in [ceil(start/tb), ceil(end/tb)) + start_pts
    first_pts: int  # pts of the two frames kept (equal for a 1-frame or a filled clip)
    last_pts: int
    filled: bool = False  # the clip has no frame; both slots hold the frame displayed at `start`


@dataclass(frozen=True)
class SampledVideo:
    """Frames of one video on the 0.5-s slot grid, and what of the video they cover."""

    frames: Tensor | None  # sample_frames: (T, H, W, 3) uint8 RGB; load_video: (T, 3, S, S) float32; streamed: None
    times: tuple[float, ...]  # (T,) presentation time of every frame, seconds from the stream start
    policy: Policy
    info: VideoInfo
    seconds_kept: float  # span of the video the frames stand for (= duration unless cut)
    cut: str | None = None  # what max_seconds dropped, e.g. "video after 60.0 s of 75.3 s not sampled"
    filled: tuple[int, ...] = ()  # frame indices that stand in for an official clip without frames
    clips: tuple[ClipInfo, ...] = ()  # official policy: one entry per 1-s clip
    notes: tuple[str, ...] = ()  # anything else the user should know (repeated frames, fallbacks)
    decoded_frames: int = 0  # frames the decoder produced (skipped non-reference frames not counted)
    decoder: str = "index"  # "index" (packet index, skip + seek) or "sequential" (every frame decoded)
    span: tuple[float, float] = (0.0, 0.0)  # the part of the video sampled, seconds from the stream start
    truncated: str | None = None  # the frames end clearly before the stream header says (a cut-off file)


# ---------------------------------------------------------------------------------------- public API


def probe_video(
    path: str | Path,
    max_pixels: int | None = DEFAULT_MAX_FRAME_PIXELS,
    max_duration: float | DurationLimit | None = None,
) -> VideoInfo:
    """Header facts of `path`'s first video stream; MediaError if it is not a readable video or its frames are
    over `max_pixels` (see `budget`); MediaTooLong if it lasts more than `max_duration` (see module docstring)."""
    with _open(path) as container:
        stream = _video_stream(path, container, max_pixels)
        return _probe(path, container, stream, max_pixels, as_limit(max_duration))


def sample_frames(
    path: str | Path,
    policy: Policy,
    *,
    max_seconds: float | None = None,
    start: float | None = None,
    end: float | None = None,
    max_pixels: int | None = DEFAULT_MAX_FRAME_PIXELS,
    max_duration: float | DurationLimit | None = None,
) -> SampledVideo:
    """Decode the frames `policy` picks (see module docstring) as (T, H, W, 3) uint8 RGB.

    RGB is `frame.to_rgb().to_ndarray()`, bit-identical to what pytorchvideo gave the official model.
    `max_seconds`: frames after it are not sampled (official limit: `OFFICIAL_MAX_VIDEO_SECONDS`); the
    result's `cut` says so. `start`/`end` (seconds): sample only that span, as if the file were cut there.
    `max_pixels`: frames larger than this are refused before decoding (MediaError, see `budget`).
    `max_duration`: a longer video is refused (MediaTooLong), from its header or while indexing its frames.
    Memory: T full-size frames (a 4K frame is 25 MB); see `load_video`.
    """
    stack = lambda arrays: torch.from_numpy(np.stack(arrays))  # noqa: E731
    return _sample(path, policy, max_seconds, _rgb, stack, start, end, max_pixels, as_limit(max_duration))


def load_video(
    path: str | Path,
    policy: Policy,
    *,
    max_seconds: float | None = None,
    size: int = DEFAULT_SIZE,
    start: float | None = None,
    end: float | None = None,
    max_pixels: int | None = DEFAULT_MAX_FRAME_PIXELS,
    max_duration: float | DurationLimit | None = None,
) -> SampledVideo:
    """`sample_frames` + `transform_frames` (bit-identical), transforming the frames in groups as they are decoded.

    Returns frames (T, 3, size, size) float32; holds at most two groups of full-size RGB frames
    (`_TransformGroups`: TRANSFORM_GROUP_FRAMES frames, TRANSFORM_CHUNK_ELEMENTS bytes each), one of them being
    transformed on a worker thread while the next frames decode.
    """
    return stream_video(
        path, policy, max_seconds=max_seconds, start=start, end=end, max_pixels=max_pixels, max_duration=max_duration
    ).load(size)


def stream_video(
    path: str | Path,
    policy: Policy,
    *,
    max_seconds: float | None = None,
    start: float | None = None,
    end: float | None = None,
    max_pixels: int | None = DEFAULT_MAX_FRAME_PIXELS,
    max_duration: float | DurationLimit | None = None,
) -> VideoStream:
    """The frames `load_video` would return (same arguments), planned but not decoded yet: the header read, the
    frames indexed and chosen (every check of `load_video` before decoding done). Decode them whole
    (`VideoStream.load`) or in bounded batches (`VideoStream.batches`)."""
    return VideoStream(_plan(path, policy, max_seconds, start, end, max_pixels, as_limit(max_duration)))


class VideoStream:
    """A video's sampled frames, chosen but not decoded yet (`stream_video`).

    `load(size)` decodes them whole, as `load_video`. `batches(n, size)` decodes them in order and yields the
    EVA-ViT input n frames at a time, (t <= n, 3, size, size) float32, bit-identical to the rows of `load(size)`:
    a frame stays uint8 RGB until its batch is transformed, so a long video is never in memory as float frames
    (at most one batch, plus the TRANSFORM_CHUNK_ELEMENTS bytes of RGB of the frames waiting for it). Once the last
    batch is out, `sampled` is the SampledVideo (frames None). If the packet index turns out wrong after some
    batches, the rest is decoded frame by frame, as `load` would (StreamDiverged where the frames already given
    would have been others: decode with `load` instead).
    """

    def __init__(self, plan: _Plan):
        self.plan = plan
        self.sampled: SampledVideo | None = None

    @property
    def info(self) -> VideoInfo:
        return self.plan.whole

    @property
    def frames(self) -> int:
        """T, the frames the stream will give (one more pass may change it where the packet index was wrong)."""
        return len(self.plan.sel.pts)

    @property
    def seconds_kept(self) -> float:
        return float(self.plan.sel.seconds_kept)

    def load(self, size: int = DEFAULT_SIZE) -> SampledVideo:
        """Every frame at once: (T, 3, size, size) float32, transformed in groups on a worker thread (`load_video`)."""
        groups = _TransformGroups(size)
        try:
            return _decode_all(self.plan, groups.add, groups.stack)
        finally:
            groups.close()

    def batches(self, n: int, size: int = DEFAULT_SIZE) -> Iterator[Tensor]:
        """(t, 3, size, size) float32 batches of n frames (the last may have fewer), in order."""
        done: list[Tensor] = []  # transformed parts of the batch being filled
        pending: list[np.ndarray] = []  # (H, W, 3) uint8 RGB of one shape, not transformed yet
        filled = 0

        def transform() -> None:
            if pending:
                done.append(transform_frames(np.stack(pending), size))
                pending.clear()

        for rgb in self._rgb_frames():
            if pending and (rgb.shape != pending[0].shape or (len(pending) + 1) * rgb.size > TRANSFORM_CHUNK_ELEMENTS):
                transform()
            pending.append(rgb)
            filled += 1
            if filled == n:
                transform()
                yield torch.cat(done) if len(done) > 1 else done[0]
                done, filled = [], 0
        transform()
        if done:
            yield torch.cat(done) if len(done) > 1 else done[0]

    def _rgb_frames(self) -> Iterator[np.ndarray]:
        """(H, W, 3) uint8 RGB frames in output order; then `sampled` is set."""
        plan = self.plan
        convert = _checked(plan.path, plan.max_pixels, _rgb)
        given = 0
        if plan.decoder == "index":
            decoded = _Decoded()
            try:
                for rgb in _in_order(_decode_indexed(plan, plan.sel.pts, convert, decoded), plan.sel.pts):
                    yield rgb
                    given += 1
                self.sampled = _result(None, plan, decoded.frames)
                return
            except (_IndexMismatch, av.error.FFmpegError):
                plan = _sequential(plan)  # decode every frame instead, as `load` does
            if plan.sel.pts[:given] != self.plan.sel.pts[:given]:
                raise StreamDiverged(plan.path, f"the packet index was wrong before frame {given}")
        rest, decoded = plan.sel.pts[given:], _Decoded()
        try:
            yield from _in_order(_decode_sequential(plan, rest, convert, decoded), rest)
        except av.error.FFmpegError as e:  # e.g. a pixel format swscale cannot turn into RGB
            raise MediaError(plan.path, f"cannot convert the video frames to RGB ({e.strerror or e})") from None
        self.sampled = _result(None, plan, decoded.frames)


class StreamDiverged(MediaError):
    """`VideoStream.batches` found the packet index wrong after giving frames that decoding every frame would not
    have chosen; `VideoStream.load` (or `load_video`) decodes the video right."""


def plan_frames(
    path: str | Path,
    policy: Policy,
    *,
    max_seconds: float | None = None,
    start: float | None = None,
    end: float | None = None,
    max_pixels: int | None = DEFAULT_MAX_FRAME_PIXELS,
    max_duration: float | DurationLimit | None = None,
) -> tuple[int, VideoInfo]:
    """(T, info): how many frames `load_video` with these arguments returns, from the header alone (nothing
    decoded but the frame index of a video whose header states no duration; pixel budget and `max_duration`
    checked), so that a caller can refuse a video before allocating its frames."""
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    info = _window(path, probe_video(path, max_pixels, max_duration), start, end)
    if policy == "uniform":
        return seconds_to_slots(float(_kept_span(info, max_seconds))), info
    clips = max(1, math.ceil(info.duration_exact - Fraction(CLIP_EPS)))  # len(official_clip_times), no loop
    if max_seconds is not None and info.duration_exact > Fraction(max_seconds):
        clips = min(clips, max(1, math.floor(max_seconds / CLIP_SECONDS)))
    return clips * FRAMES_PER_CLIP, info


def transform_frames(frames: Tensor | np.ndarray, size: int = DEFAULT_SIZE) -> Tensor:
    """Official video frame transform (spec §1.3): (T, H, W, 3) uint8 -> (T, 3, size, size) float32.

    /255, `F.interpolate(bicubic, align_corners=False)` without antialias, no clamp, aspect ratio not kept,
    then CLIP mean/std. Resizing frame by frame equals the official (C, T, H, W) call bit for bit, so the
    frames go through in chunks of at most TRANSFORM_CHUNK_ELEMENTS input values to bound memory.
    """
    frames = torch.as_tensor(frames)
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"transform_frames expects (T, H, W, 3) uint8, got {tuple(frames.shape)} {frames.dtype}")
    n, h, w, _ = frames.shape
    mean = torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD).view(1, 3, 1, 1)
    out = torch.empty(n, 3, size, size)
    chunk = max(1, TRANSFORM_CHUNK_ELEMENTS // (h * w * 3))
    for i in range(0, n, chunk):
        x = frames[i : i + chunk].permute(0, 3, 1, 2).float().div_(255.0)  # (t, 3, H, W)
        x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)  # (t, 3, S, S)
        out[i : i + chunk] = x.sub_(mean).div_(std)  # in place: the same values, no temporaries
    return out


class _TransformGroups:
    """`load_video`'s frame conversion: decoded frames wait as RGB uint8 and go through `transform_frames` in
    groups (up to TRANSFORM_GROUP_FRAMES frames of one size and TRANSFORM_CHUNK_ELEMENTS bytes): one call per
    group, not per frame. A full group is transformed on a worker thread while decoding goes on (torch releases
    the GIL); at most two groups are held (one transforming, one filling). `add` returns a handle; `stack`
    waits, then gathers the handles; `close` stops the worker (also after an error)."""

    def __init__(self, size: int):
        self.size = size
        self.pending: list[np.ndarray] = []  # (H, W, 3) uint8, all of one shape
        self.done: list[Tensor] = []  # (3, S, S) float32 per handle transformed so far
        self.added = 0  # handles given out
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="transform_frames")
        self.running: Future | None = None  # the group being transformed: (t, 3, S, S)

    def add(self, frame: av.VideoFrame) -> int:
        rgb = _rgb(frame)
        if self.pending and (
            rgb.shape != self.pending[0].shape
            or len(self.pending) >= TRANSFORM_GROUP_FRAMES
            or (len(self.pending) + 1) * rgb.size > TRANSFORM_CHUNK_ELEMENTS
        ):
            self._submit()
        self.pending.append(rgb)
        self.added += 1
        return self.added - 1

    def stack(self, handles: list[int]) -> Tensor:
        self._submit()
        self._collect()
        return torch.stack([self.done[h] for h in handles])  # (T, 3, S, S)

    def close(self) -> None:
        self.worker.shutdown(wait=True, cancel_futures=True)

    def _submit(self) -> None:
        self._collect()  # the previous group first: handles stay in order, memory stays bounded
        if self.pending:
            self.running = self.worker.submit(transform_frames, np.stack(self.pending), self.size)
            self.pending = []

    def _collect(self) -> None:
        if self.running is not None:
            group, self.running = self.running, None
            self.done.extend(group.result().unbind(0))


def official_clip_times(duration: Fraction | float) -> list[tuple[Fraction, Fraction]]:
    """Clip boundaries of `UniformClipSampler(1, backpad_last=True)` as driven by the official
    `get_clip_timepoints`: [0,1), [1,2), ..., the last one shifted back to end at `duration`; one clip
    [0,1) if duration < 1. Exact (Fraction) arithmetic like pytorchvideo, including its 1e-6 tolerance."""
    duration = Fraction(duration)
    clips: list[tuple[Fraction, Fraction]] = []
    end = Fraction(0)
    while True:
        start, end = _backpadded_clip(end, duration)
        clips.append((start, end))
        if abs(_backpadded_clip(end, duration)[1] - end) < CLIP_EPS:
            return clips


def _backpadded_clip(last_end: Fraction, duration: Fraction) -> tuple[Fraction, Fraction]:
    start = last_end - max(Fraction(0), last_end + CLIP_SECONDS - duration)
    start = max(Fraction(0), start)
    return start, start + CLIP_SECONDS


# ---------------------------------------------------------------------------------------- opening


def _open(path: str | Path) -> av.container.InputContainer:
    """av.open with one-line MediaErrors for the usual bad inputs (never a hang on a pipe or device)."""
    p = check_file(path)
    try:
        return av.open(str(p), metadata_errors="ignore")
    except av.error.FFmpegError as e:
        raise MediaError(p, f"not a readable video file ({e.strerror or type(e).__name__})") from None
    except OSError as e:
        raise MediaError(p, f"cannot read file ({e.strerror or e})") from None


def _video_stream(path, container, max_pixels: int | None) -> av.video.stream.VideoStream:
    """The first video stream, its header size checked against the pixel budget (nothing decoded yet)."""
    if container.format.name in NOT_VIDEO_FORMATS:
        raise MediaError(path, f"not a video file (FFmpeg reads it as {container.format.long_name!r})")
    if not container.streams.video:
        raise MediaError(path, "has no video stream")
    stream = container.streams.video[0]
    check_frame_pixels(path, stream.codec_context.width, stream.codec_context.height, max_pixels, "video frame")
    return stream


def _checked(path, max_pixels: int | None, convert: Callable) -> Callable:
    """`convert`, after checking the decoded frame's own size (it may differ from the header) against the budget."""

    def run(frame: av.VideoFrame):
        check_frame_pixels(path, frame.width, frame.height, max_pixels, "decoded video frame")
        return convert(frame)

    return run


def _probe(
    path, container, stream, max_pixels: int | None = DEFAULT_MAX_FRAME_PIXELS, limit: DurationLimit | None = None
) -> VideoInfo:
    tb = stream.time_base or Fraction(1, 1_000_000)
    start_pts = stream.start_time if stream.start_time is not None else 0  # official: None -> 0
    duration, source = _header_duration(container, stream, tb)
    if duration is not None and limit is not None and limit.header and duration > limit.exact:
        raise limit.error(path, "video", float(duration))
    if duration is None:  # index the frames to find the end, refusing as soon as one starts past the limit
        guard = None if limit is None else _Guard(path, limit, start_pts, tb)
        index = _scan_packets(container, stream, None, guard) or _scan_decoded(
            path, stream.index, None, max_pixels, guard
        )
        duration, source = _frames_duration(index, tb, start_pts), "frames"
    rate = stream.average_rate or stream.guessed_rate
    return VideoInfo(
        path=str(path),
        duration=float(duration),
        duration_source=source,
        fps=float(rate) if rate else 0.0,
        width=stream.width,
        height=stream.height,
        has_audio=bool(container.streams.audio),
        frame_count=stream.frames or None,
        codec=stream.codec_context.name,
        start_time=float(start_pts * tb),
        time_base=tb,
        start_pts=start_pts,
        duration_exact=duration,
    )


def _header_duration(container, stream, tb) -> tuple[Fraction | None, str]:
    if stream.duration is not None and stream.duration > 0:
        return stream.duration * tb, "stream"
    if container.duration is not None and container.duration > 0:
        return Fraction(container.duration, av.time_base), "container"
    return None, ""


def _frames_duration(index: _FrameIndex, tb: Fraction, start_pts: int) -> Fraction:
    """End of the last frame (its pts + its duration) when no header gives a duration."""
    if not index.pts:
        return Fraction(0)
    return max(Fraction(0), (index.pts[-1] + index.last_duration - start_pts) * tb)


# -------------------------------------------------------------------------------------- frame index


@dataclass
class _FrameIndex:
    """Presentation timestamps of the frames, from packets (cheap) or from decoding (fallback)."""

    pts: list[int]  # every frame's pts, sorted, unique
    last_duration: int = 0  # duration (time-base units) of the last frame
    packets: list[tuple[int, int, bool]] | None = None  # "packets": (pts, seek timestamp, keyframe), decode order
    ordinals: dict[int, int] | None = None  # "decoded": pts -> output ordinal (the last frame with that pts)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Guard:
    """Refuses (MediaTooLong) a frame that starts at or past `limit` seconds from `start_pts`."""

    path: str | Path
    limit: DurationLimit
    start_pts: int
    time_base: Fraction

    def check(self, pts: int) -> None:
        if (pts - self.start_pts) * self.time_base >= self.limit.exact:
            raise self.limit.error(self.path, "video")


def _scan_packets(container, stream, stop_pts: int | None, guard: _Guard | None = None) -> _FrameIndex | None:
    """Demux the video packets without decoding. None if they cannot index the frames exactly
    (a packet without pts, two frames with one pts, a read error)."""
    packets, pts, last_pts, last_duration = [], [], 0, 0
    try:
        for packet in container.demux(stream):
            if packet.size == 0:  # PyAV's trailing flush packet
                continue
            if packet.pts is None:
                return None
            if guard is not None:
                guard.check(packet.pts)
            seek_ts = min(packet.pts, packet.dts) if packet.dts is not None else packet.pts
            packets.append((packet.pts, seek_ts, packet.is_keyframe))
            if not packet.is_discard:  # edit-list trimmed: decoded but never shown
                if not pts or packet.pts > last_pts:
                    last_pts, last_duration = packet.pts, packet.duration or 0
                pts.append(packet.pts)
            if stop_pts is not None and packet.dts is not None and packet.dts > stop_pts:
                break  # pts >= dts: no later packet is shown before stop_pts
    except av.error.FFmpegError:
        return None
    if len(set(pts)) != len(pts):
        return None
    return _FrameIndex(pts=sorted(pts), last_duration=last_duration, packets=packets)


def _scan_decoded(
    path, stream_index: int, stop_pts: int | None, max_pixels: int | None, guard: _Guard | None = None
) -> _FrameIndex:
    """Decode every frame (no RGB) to learn its pts; frames without pts get constant-rate timestamps.
    `guard`: refuse as soon as a frame starts past its limit (by its pts, or by its constant-rate time)."""
    ordinals: dict[int, int] = {}
    missing_pts, n, last_duration, notes = False, 0, 0, []
    with _open(path) as container:
        stream = container.streams[stream_index]
        step, start, rate = _frame_step(stream), stream.start_time or 0, _rate(stream)
        for n, frame in _decode_in_order(container, stream, notes):
            check_frame_pixels(path, frame.width, frame.height, max_pixels, "decoded video frame")
            if frame.pts is None:
                missing_pts = True
            if guard is not None:
                guard.check(start + n * step if missing_pts else frame.pts)
            if not missing_pts:
                ordinals[frame.pts] = n  # official dedup: a dict keyed by pts keeps the last frame
                last_duration = getattr(frame, "duration", None) or step  # PyAV < 15: no Frame.duration
                if stop_pts is not None and frame.pts > stop_pts:
                    break
            elif stop_pts is not None and start + n * step > stop_pts:
                break
    if missing_pts:  # e.g. a raw .h264 stream: no timestamps at all
        ordinals = {start + k * step: k for k in range(n + 1)}
        last_duration = step
        notes.append(f"frames carry no timestamps; assumed a constant {float(rate):g} fps")
    return _FrameIndex(pts=sorted(ordinals), last_duration=last_duration, ordinals=ordinals, notes=notes)


def _rate(stream) -> Fraction:
    return stream.average_rate or stream.guessed_rate or Fraction(FALLBACK_FPS)


def _frame_step(stream) -> int:
    """One frame period in time-base units (at least 1)."""
    return max(1, round(1 / (_rate(stream) * (stream.time_base or Fraction(1, 1_000_000)))))


def _decode_in_order(container, stream, notes: list[str]):
    """(ordinal, frame) for every decodable frame; undecodable packets are skipped, a read error ends it."""
    stream.thread_type = "AUTO"
    n = 0
    try:
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                continue
            for frame in frames:
                yield n, frame
                n += 1
    except av.error.FFmpegError as e:
        notes.append(f"file is damaged after frame {n} ({e.strerror or type(e).__name__}); later frames are missing")


# ------------------------------------------------------------------------------------------ selection


def _window(path, info: VideoInfo, start: float | None, end: float | None) -> VideoInfo:
    """The video seen through a time span: the selection then treats [start, end) as the whole file
    (times and clip boundaries count from `start`; its first pts is the first at or after it)."""
    if start is None and end is None:
        return info
    begin = Fraction(start or 0).limit_denominator(10**6)
    stop = info.duration_exact if end is None else min(info.duration_exact, Fraction(end).limit_denominator(10**6))
    if begin < 0 or stop <= begin:
        raise MediaError(
            path,
            f"time span [{float(begin):g}, {float(stop):g}) s is empty or negative "
            f"(the video lasts {info.duration:.2f} s)",
        )
    shift = math.ceil(begin / info.time_base)
    duration = stop - shift * info.time_base
    return dataclasses.replace(
        info,
        start_pts=info.start_pts + shift,
        duration_exact=duration,
        duration=float(duration),
        start_time=info.start_time + float(shift * info.time_base),
    )


@dataclass
class _Selection:
    pts: list[int]  # (T,) pts of every output frame (may repeat)
    seconds_kept: Fraction
    cut: str | None = None
    clips: list[ClipInfo] = field(default_factory=list)
    filled: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _needed_seconds(info: VideoInfo, policy: Policy, max_seconds: float | None) -> Fraction:
    """Span of the timeline the selection will look at (to stop indexing early)."""
    if policy == "official":
        clips = _kept_clips(official_clip_times(info.duration_exact), info, max_seconds)
        return clips[-1][1]
    return _kept_span(info, max_seconds)


def _kept_clips(clips, info: VideoInfo, max_seconds: float | None):
    """Official clips after `max_seconds` (official: `video_clips[:60]` for a 60-s limit)."""
    if max_seconds is None or info.duration_exact <= Fraction(max_seconds):
        return clips
    return clips[: max(1, math.floor(max_seconds / CLIP_SECONDS))]


def _kept_span(info: VideoInfo, max_seconds: float | None) -> Fraction:
    if max_seconds is None:
        return info.duration_exact
    return min(info.duration_exact, Fraction(max_seconds))


def _cut_message(info: VideoInfo, kept: Fraction, max_seconds: float | None) -> str | None:
    if max_seconds is None or kept >= info.duration_exact:
        return None
    return f"video after {float(kept):.2f} s of {info.duration:.2f} s not sampled (max_seconds={max_seconds:g})"


def _select_official(index: _FrameIndex, info: VideoInfo, max_seconds: float | None) -> _Selection:
    """First and last frame of every 1-s clip; a clip holds the frames with pts in
    [ceil(s/tb), ceil(e/tb)) + start_pts (pytorchvideo `secs_to_pts(round_mode="ceil")`)."""
    all_clips = official_clip_times(info.duration_exact)
    clips = _kept_clips(all_clips, info, max_seconds)
    sel = _Selection(pts=[], seconds_kept=clips[-1][1] if len(clips) < len(all_clips) else info.duration_exact)
    sel.cut = _cut_message(info, sel.seconds_kept, max_seconds)
    tb, pts = info.time_base, index.pts
    for k, (s, e) in enumerate(clips):
        i = bisect.bisect_left(pts, math.ceil(s / tb) + info.start_pts)
        j = bisect.bisect_left(pts, math.ceil(e / tb) + info.start_pts)
        if j > i:
            first, last, filled = pts[i], pts[j - 1], False
        else:  # no frame: hold the frame displayed at the clip start
            first = last = pts[i - 1] if i > 0 else pts[0]
            filled = True
            sel.filled += [len(sel.pts), len(sel.pts) + 1]
            sel.notes.append(
                f"clip {k} [{float(s):.2f}, {float(e):.2f}) s has no frame; "
                f"repeated the frame at {float((first - info.start_pts) * tb):.2f} s"
            )
        sel.clips.append(ClipInfo(float(s), float(e), j - i, first, last, filled))
        sel.pts += [first] + [last] * (FRAMES_PER_CLIP - 1)
    return sel


def _select_uniform(index: _FrameIndex, info: VideoInfo, max_seconds: float | None) -> _Selection:
    """At t = 0, 0.5, 1.0, ... < kept span: the last frame with pts <= t (the first frame if none)."""
    kept = _kept_span(info, max_seconds)
    sel = _Selection(pts=[], seconds_kept=kept, cut=_cut_message(info, kept, max_seconds))
    tb, pts = info.time_base, index.pts
    for k in range(seconds_to_slots(float(kept))):
        t = k * Fraction(SECONDS_PER_SLOT)
        i = bisect.bisect_right(pts, math.floor(t / tb) + info.start_pts)
        sel.pts.append(pts[max(i - 1, 0)])
    last_end = (pts[-1] + index.last_duration - info.start_pts) * tb
    if kept - last_end > SECONDS_PER_SLOT:
        sel.notes.append(
            f"frames end at {float(last_end):.2f} s but the header says {info.duration:.2f} s; "
            f"the last frame is repeated"
        )
    return sel


SELECTORS = {"official": _select_official, "uniform": _select_uniform}


# ------------------------------------------------------------------------------------------- decoding


class _IndexMismatch(Exception):
    """The packet index and the decoder disagree: decode every frame instead."""


@dataclass
class _Plan:
    """What to decode: the video (window), its frame index and the frames the policy keeps (`sel.pts`)."""

    path: str | Path
    policy: Policy
    max_seconds: float | None
    max_pixels: int | None
    stream_index: int
    whole: VideoInfo  # the file's video stream
    info: VideoInfo  # the part sampled (`_window`)
    stop_pts: int  # the index goes this far
    index: _FrameIndex
    sel: _Selection
    decoder: str  # "index" (packet index, skip + seek) or "sequential" (every frame decoded)


@dataclass
class _Decoded:
    frames: int = 0  # frames the decoder produced


def _plan(
    path,
    policy: Policy,
    max_seconds: float | None,
    start: float | None = None,
    end: float | None = None,
    max_pixels: int | None = DEFAULT_MAX_FRAME_PIXELS,
    limit: DurationLimit | None = None,
) -> _Plan:
    """Header, frame index and selection; nothing decoded but what a video without packet timestamps needs."""
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    if max_seconds is not None and max_seconds <= 0:
        raise ValueError(f"max_seconds must be positive, got {max_seconds}")
    with _open(path) as container:
        stream = _video_stream(path, container, max_pixels)
        stream_index = stream.index
        whole = _probe(path, container, stream, max_pixels, limit)
    info = _window(path, whole, start, end)
    stop_pts = info.start_pts + math.ceil(
        (_needed_seconds(info, policy, max_seconds) + SCAN_MARGIN_SECONDS) / info.time_base
    )
    with _open(path) as container:
        index = _scan_packets(container, container.streams[stream_index], stop_pts)
    plan = _Plan(path, policy, max_seconds, max_pixels, stream_index, whole, info, stop_pts, None, None, "index")
    if index is None or not index.pts:
        return _sequential(plan)
    return dataclasses.replace(plan, index=index, sel=SELECTORS[policy](index, info, max_seconds))


def _sequential(plan: _Plan) -> _Plan:
    """The plan from an index of decoded frames (when the packet index cannot be used or was wrong)."""
    index = _scan_decoded(plan.path, plan.stream_index, plan.stop_pts, plan.max_pixels)
    if not index.pts:
        raise MediaError(plan.path, "video stream has no decodable frame")
    sel = SELECTORS[plan.policy](index, plan.info, plan.max_seconds)
    return dataclasses.replace(plan, index=index, sel=sel, decoder="sequential")


def _sample(
    path,
    policy: Policy,
    max_seconds: float | None,
    convert: Callable,
    stack: Callable,
    start: float | None = None,
    end: float | None = None,
    max_pixels: int | None = DEFAULT_MAX_FRAME_PIXELS,
    limit: DurationLimit | None = None,
) -> SampledVideo:
    return _decode_all(_plan(path, policy, max_seconds, start, end, max_pixels, limit), convert, stack)


def _decode_all(plan: _Plan, convert: Callable, stack: Callable) -> SampledVideo:
    """Every kept frame through `convert`, then `stack` of them in output order."""
    convert = _checked(plan.path, plan.max_pixels, convert)
    if plan.decoder == "index":
        decoded = _Decoded()
        try:
            got = dict(_decode_indexed(plan, plan.sel.pts, convert, decoded))
            return _result(stack([got[p] for p in plan.sel.pts]), plan, decoded.frames)
        except (_IndexMismatch, av.error.FFmpegError):
            plan = _sequential(plan)  # decode every frame instead
    decoded = _Decoded()
    try:
        got = dict(_decode_sequential(plan, plan.sel.pts, convert, decoded))
    except av.error.FFmpegError as e:  # e.g. a pixel format swscale cannot turn into RGB
        raise MediaError(plan.path, f"cannot convert the video frames to RGB ({e.strerror or e})") from None
    return _result(stack([got[p] for p in plan.sel.pts]), plan, decoded.frames)


def _result(frames: Tensor | None, plan: _Plan, n_decoded: int) -> SampledVideo:
    info, window, sel, index = plan.whole, plan.info, plan.sel, plan.index
    tb = info.time_base
    span = (
        float((window.start_pts - info.start_pts) * tb),
        float((window.start_pts - info.start_pts) * tb + window.duration_exact),
    )
    frames_end = (index.pts[-1] + index.last_duration - info.start_pts) * tb
    truncated = None
    if info.duration_source == "stream" and span[0] + sel.seconds_kept - frames_end > TRUNCATION_TOLERANCE_SECONDS:
        truncated = (
            f"video frames end at {float(frames_end):.2f} s of the {info.duration:.2f} s the header states "
            f"(truncated file?)"
        )
    return SampledVideo(
        truncated=truncated,
        frames=frames,
        times=tuple(float((p - info.start_pts) * tb) for p in sel.pts),
        policy=plan.policy,
        info=info,
        seconds_kept=float(sel.seconds_kept),
        cut=sel.cut,
        span=span,
        filled=tuple(sel.filled),
        clips=tuple(sel.clips),
        notes=tuple(index.notes + sel.notes),
        decoded_frames=n_decoded,
        decoder=plan.decoder,
    )


def _in_order(pairs: Iterator[tuple[int, object]], order: list[int]) -> Iterator:
    """The converted frames by output position (`order`: the pts of each position, non-decreasing, repeats
    allowed) from (pts, frame) pairs in decoding order; a frame is let go after its last position."""
    uses = Counter(order)
    held: dict[int, object] = {}
    for p in order:
        while p not in held:
            try:
                q, value = next(pairs)
            except StopIteration:
                raise _IndexMismatch from None
            held[q] = value
        value = held[p]
        uses[p] -= 1
        if not uses[p]:
            del held[p]
        yield value


def _rgb(frame: av.VideoFrame) -> np.ndarray:
    """(H, W, 3) uint8: the conversion pytorchvideo used (swscale defaults)."""
    return frame.to_rgb().to_ndarray()


def _decode_indexed(plan: _Plan, wanted: list[int], convert: Callable, decoded: _Decoded) -> Iterator[tuple]:
    """(pts, converted frame) for every wanted pts, decoding only what they need (in pts order, each once).

    Packets whose frame is not wanted are decoded with skip_frame="NONREF" (reference frames still decode,
    so every wanted frame is bit-identical), and a run of GOPs with nothing wanted is jumped over by seeking.
    """
    index = plan.index
    packets = index.packets
    position = {p[0]: i for i, p in enumerate(packets)}
    keyframes = [i for i, p in enumerate(packets) if p[2]]
    known, wanted_set = set(index.pts), set(wanted)
    got: set[int] = set()
    with _open(plan.path) as container:
        stream = container.streams[plan.stream_index]
        stream.thread_type = "SLICE"  # skip_frame then applies to exactly the packet it is set for
        can_seek = container.format.name in SEEKABLE_FORMATS
        demuxer, next_pos = container.demux(stream), 0
        for target in sorted(wanted_set):
            if target in got:
                continue
            key = _start_keyframe(packets, keyframes, position[target], target)
            if can_seek and key - next_pos >= SEEK_MIN_PACKETS:
                _seek(container, stream, packets[key][1])
                demuxer, next_pos = container.demux(stream), None
            for packet in demuxer:
                if packet.size:
                    pos = position.get(packet.pts, len(packets))
                    if next_pos is None and pos > key:  # the seek overshot the keyframe
                        raise _IndexMismatch
                    next_pos = pos + 1
                yield from _feed(stream.codec_context, packet, known, wanted_set, got, convert, decoded)
                if target in got:
                    break
            if target not in got:
                raise _IndexMismatch


def _seek(container, stream, timestamp: int) -> None:
    try:
        container.seek(timestamp, stream=stream, backward=True, any_frame=False)
    except av.error.FFmpegError:
        raise _IndexMismatch from None


def _start_keyframe(packets, keyframes: list[int], target_pos: int, target_pts: int) -> int:
    """Decode-order index of the keyframe to start from: the last one at or before the target packet
    whose pts is <= the target (an open-GOP leading frame needs the keyframe before its own)."""
    k = bisect.bisect_right(keyframes, target_pos) - 1
    while k > 0 and packets[keyframes[k]][0] > target_pts:
        k -= 1
    return keyframes[k] if k >= 0 else 0


def _feed(cc, packet, known: set, wanted: set, got: set, convert: Callable, decoded: _Decoded) -> list[tuple]:
    """Decode one packet (fully only if its frame is wanted); (pts, converted) of the wanted frames it releases."""
    cc.skip_frame = "DEFAULT" if (packet.pts in wanted or not packet.size) else "NONREF"
    try:
        frames = packet.decode()
    except av.error.FFmpegError:
        raise _IndexMismatch from None
    decoded.frames += len(frames)
    out = []
    for frame in frames:
        if frame.pts not in known:
            raise _IndexMismatch
        if frame.pts in wanted and frame.pts not in got:
            got.add(frame.pts)
            out.append((frame.pts, convert(frame)))
    return out


def _decode_sequential(plan: _Plan, wanted: list[int], convert: Callable, decoded: _Decoded) -> Iterator[tuple]:
    """The fallback: decode every frame again, (pts, converted frame) for the wanted ones (by ordinal)."""
    by_ordinal = {plan.index.ordinals[p]: p for p in set(wanted)}
    last = max(by_ordinal, default=-1)
    found, n = 0, -1
    with _open(plan.path) as container:
        stream = container.streams[plan.stream_index]
        for n, frame in _decode_in_order(container, stream, []):
            if n in by_ordinal:
                found += 1
                yield by_ordinal[n], convert(frame)
            if n >= last:
                break
    decoded.frames = n + 1
    if found != len(by_ordinal):
        raise MediaError(
            plan.path,
            f"decoding is not repeatable: {len(by_ordinal) - found} frame(s) vanished "
            f"on the second pass (stopped after {n + 1} frames)",
        )
