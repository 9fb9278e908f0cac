"""load_clip: the media of one sample (video, video + audio, image, image + audio, or audio) -> MediaClip.

A video's own audio track is used when no separate audio file is given. With `limits: official` the released model's
input limits apply (audio after 30 s and video after 60 s dropped), and the MediaClip's coverage says what was cut;
with `limits: none` nothing is dropped. With `media.image_spotlight` an image becomes a short video of its sub-images
(`image_frames`), so everything after this point sees a video. Given a `ContextBudget` (the LLM context), media too
long for it is refused from the headers before anything is decoded. Where a header states no duration (a raw .h264
stream), decoding stops and refuses (MediaTooLong) once past the longest media the context could take, or past
`max_media_seconds` (the server's limit, also checked against the headers). A file whose streams end before their
headers say (a truncated file) is used as far as it goes, and the cut reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor

from videosalmonn.config import MediaConfig
from videosalmonn.errors import InputError, MediaError
from videosalmonn.media.audio import audio_header_seconds, has_audio_stream, load_audio
from videosalmonn.media.budget import CONTEXT_LIMIT, ContextBudget, DurationLimit, tightest
from videosalmonn.media.image import load_image, transform_image, transform_spotlight
from videosalmonn.media.timeline import (
    OFFICIAL_MAX_AUDIO_SECONDS,
    OFFICIAL_MAX_VIDEO_SECONDS,
    SAMPLE_RATE,
    SECONDS_PER_SLOT,
)
from videosalmonn.media.video import SampledVideo, VideoStream, plan_frames, stream_video
from videosalmonn.types import AVFeatures, Coverage, MediaClip


def load_clip(
    cfg: MediaConfig,
    *,
    video: str | Path | None = None,
    audio: str | Path | None = None,
    image: str | Path | None = None,
    start: float | None = None,
    end: float | None = None,
    video_audio: bool = True,
    context: ContextBudget | None = None,
    max_media_seconds: float | None = None,
) -> MediaClip:
    """The sample's media; `start`/`end` (seconds) keep only that span of the video and the audio;
    `video_audio=False` ignores a video's own sound track (video-only input); `context`: refuse media the LLM
    cannot take (InputError) before decoding it; `max_media_seconds`: refuse (MediaTooLong) files that last
    longer, from their headers or while decoding."""
    return open_clip(
        cfg,
        video=video,
        audio=audio,
        image=image,
        start=start,
        end=end,
        video_audio=video_audio,
        context=context,
        max_media_seconds=max_media_seconds,
    ).load()


def open_clip(
    cfg: MediaConfig,
    *,
    video: str | Path | None = None,
    audio: str | Path | None = None,
    image: str | Path | None = None,
    start: float | None = None,
    end: float | None = None,
    video_audio: bool = True,
    context: ContextBudget | None = None,
    max_media_seconds: float | None = None,
) -> OpenedClip:
    """`load_clip` (same arguments) up to decoding: every check done, a video's frames chosen (`stream_video`), an
    image decoded; `load()` decodes the rest at once (`load_clip`), or the caller streams the video frames
    (`video.batches`) after `load_audio()`, and `clip(...)` makes the MediaClip."""
    if video is None and audio is None and image is None:
        raise InputError("no media: give a video, an image or an audio file")
    if video is not None and image is not None:
        raise InputError("give a video or an image, not both")
    if (start is not None or end is not None) and image is not None:
        raise InputError("a time span (start/end) applies to video and audio, not to an image")
    official = cfg.limits == "official"
    media_limit = None
    if max_media_seconds is not None:
        name = f"the most this server takes (max_media_seconds={max_media_seconds:g})"
        media_limit = DurationLimit(max_media_seconds, name)
    video_limit, audio_limit = media_limit, media_limit
    if context is not None:
        if not official and end is None:  # else the frames are bounded already (60 s, or the span)
            longest = (start or 0.0) + context.max_video_seconds()
            video_limit = tightest(media_limit, DurationLimit(longest, CONTEXT_LIMIT, header=False))
        max_audio_seconds = _check_context(cfg, context, video, audio, image, start, end, video_audio, video_limit)
        if max_audio_seconds is not None:
            audio_limit = tightest(media_limit, DurationLimit(max_audio_seconds, CONTEXT_LIMIT, header=False))
    opened = OpenedClip(cfg, start=start, end=end, audio_limit=audio_limit)
    if video is not None:
        opened.video = stream_video(
            video,
            cfg.frame_sampling,
            start=start,
            end=end,
            max_seconds=OFFICIAL_MAX_VIDEO_SECONDS if official else None,
            max_pixels=cfg.max_frame_pixels,
            max_duration=video_limit,
        )
        if audio is None and video_audio and opened.video.info.has_audio and has_audio_stream(video):
            audio = video
    elif image is not None:
        opened.image, opened.times = _image(cfg, image, opened.notes)
        opened.is_image = image_frames(cfg)[1]
    opened.audio = audio
    return opened


@dataclass
class ClipAudio:
    """A clip's decoded audio and what of it was dropped."""

    samples: Tensor  # (N,) float32, 16 kHz mono: the part used
    file_seconds: float  # the whole decoded stream
    cut: list[str]  # what was dropped, one line each


@dataclass
class OpenedClip:
    """A sample's media checked and planned (`open_clip`); the video frames and the audio not decoded yet."""

    cfg: MediaConfig
    video: VideoStream | None = None  # a video's frames, chosen, not decoded
    image: Tensor | None = None  # an image's frames (Tv, 3, S, S), decoded
    times: list[float] = field(default_factory=list)  # the image frames' times
    is_image: bool = False
    audio: str | Path | None = None  # the file whose audio track is used (a video's own included)
    start: float | None = None
    end: float | None = None
    audio_limit: DurationLimit | None = None
    notes: list[str] = field(default_factory=list)  # the image's

    def seconds(self) -> float:
        """How long the media lasts, from the headers: the video's sampled span, the audio's stated length (in the
        time span, and under `limits: official`)."""
        seconds = 0.0 if self.video is None else self.video.seconds_kept
        if self.audio is not None:
            stated = audio_header_seconds(self.audio) or 0.0
            audio = max(0.0, min(stated, self.end if self.end is not None else stated) - (self.start or 0.0))
            seconds = max(seconds, min(audio, OFFICIAL_MAX_AUDIO_SECONDS) if self.cfg.limits == "official" else audio)
        return seconds

    def load(self) -> MediaClip:
        """Everything decoded: the video frames at once (`VideoStream.load`), then the audio (`load_clip`)."""
        sampled = None if self.video is None else self.video.load(self.cfg.image_size)
        frames = self.image if sampled is None else sampled.frames
        return self.clip(frames, sampled, self.load_audio())

    def load_audio(self) -> ClipAudio | None:
        """The audio decoded (None without audio): the time span kept, past 30 s dropped under `limits: official`."""
        if self.audio is None:
            return None
        wav = load_audio(self.audio, self.cfg.audio_channels, self.audio_limit)
        cut = [wav.cut] if wav.cut else []
        samples = _span(wav.samples, self.start, self.end, self.audio)
        limit = OFFICIAL_MAX_AUDIO_SECONDS * SAMPLE_RATE
        if self.cfg.limits == "official" and len(samples) > limit:
            samples = samples[:limit]
            cut.append(
                f"audio after {OFFICIAL_MAX_AUDIO_SECONDS:.1f} s of {wav.seconds:.1f} s not used (--limits official)"
            )
        return ClipAudio(samples, wav.seconds, cut)

    def clip(
        self,
        frames: Tensor | None,
        sampled: SampledVideo | None,
        audio: ClipAudio | None,
        features: AVFeatures | None = None,
        instruction: str | None = None,
    ) -> MediaClip:
        """The MediaClip of `frames` (None: streamed), the video as sampled (`VideoStream.load`, or `sampled` after
        `batches`) and the audio; with `features` (encoded while decoding, for `instruction`) it keeps those
        instead of the waveform."""
        cov = Coverage()
        times = self.times
        if sampled is not None:
            times = list(sampled.times)
            cov.video_seconds = sampled.seconds_kept
            cov.media_seconds = sampled.info.duration
            cov.cut += [c for c in (sampled.cut, sampled.truncated) if c]
            cov.notes += list(sampled.notes)
        cov.notes += self.notes
        if audio is not None:
            cov.cut += audio.cut
            cov.media_seconds = max(cov.media_seconds or 0.0, audio.file_seconds)
            cov.audio_seconds = len(audio.samples) / SAMPLE_RATE
            cov.audio_present = True
        cov.frames = len(times) if frames is None else frames.shape[0]
        waveform = audio.samples if audio is not None and features is None else None
        return MediaClip(frames, self.is_image, waveform, cov, times, features, instruction)


def image_frames(cfg: MediaConfig) -> tuple[int, bool]:
    """(frames, is_image) an image becomes: one image frame (repeated over `connector.image_slots`), or with
    `image_spotlight` grid x grid video frames. What `multires.media_token_count` takes for an image."""
    if cfg.image_spotlight is None:
        return 1, True
    return cfg.image_spotlight**2, False


def _image(cfg: MediaConfig, path: str | Path, notes: list[str]):
    """An image's frames (Tv, 3, S, S) and their times: one image frame, or its spotlight sub-images 0.5 s apart."""
    img = load_image(path, cfg.max_frame_pixels)
    grid = cfg.image_spotlight
    if grid is None:
        return transform_image(img, cfg.image_size), [0.0]
    try:
        frames = transform_spotlight(img, grid, cfg.image_size)
    except ValueError as e:
        raise MediaError(path, f"{e} (media.image_spotlight={grid})") from None
    notes.append(f"image spotlight: {grid}x{grid} sub-images scanned as {len(frames)} frames")
    return frames, [i * SECONDS_PER_SLOT for i in range(len(frames))]


def _check_context(
    cfg: MediaConfig, context: ContextBudget, video, audio, image, start, end, video_audio, video_limit=None
):
    """InputError if the media's header durations already overflow the LLM context; else the longest audio
    (seconds from the file start) worth decoding, None when the limits already bound it. A video whose header
    states no duration is indexed only up to `video_limit`."""
    official = cfg.limits == "official"
    (frames, is_image), seconds, path = (image_frames(cfg) if image is not None else (0, False)), 0.0, image
    if video is not None:
        max_video = OFFICIAL_MAX_VIDEO_SECONDS if official else None
        frames, info = plan_frames(
            video,
            cfg.frame_sampling,
            max_seconds=max_video,
            start=start,
            end=end,
            max_pixels=cfg.max_frame_pixels,
            max_duration=video_limit,
        )
        seconds, path = min(info.duration, max_video or info.duration), video
        if audio is None and video_audio and info.has_audio:
            audio = video
    audio_seconds = 0.0
    if audio is not None:
        stated = audio_header_seconds(audio) or 0.0
        audio_seconds = max(0.0, min(stated, end if end is not None else stated) - (start or 0.0))
        audio_seconds = min(audio_seconds, OFFICIAL_MAX_AUDIO_SECONDS) if official else audio_seconds
        path = path if seconds >= audio_seconds else audio
        seconds = max(seconds, audio_seconds)
    context.check(path, frames, is_image, audio_seconds, seconds)
    if audio is None or official:
        return None
    return (start or 0.0) + context.max_audio_seconds(frames, is_image)


def _span(samples, start: float | None, end: float | None, path):
    if start is None and end is None:
        return samples
    first = round((start or 0.0) * SAMPLE_RATE)
    last = len(samples) if end is None else min(len(samples), round(end * SAMPLE_RATE))
    if first < 0 or last <= first:
        raise MediaError(
            path,
            f"time span [{start or 0:g}, {end if end is not None else 'end'}) s holds no audio "
            f"(the audio lasts {len(samples) / SAMPLE_RATE:.2f} s)",
        )
    return samples[first:last]
