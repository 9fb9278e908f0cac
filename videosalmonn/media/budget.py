"""Decoded-pixel budget: a frame or image is refused from its header size, before anything is decoded.

A 560-KB file can hold two 16000 x 16000 PNG frames (0.77 GB each as RGB, 3 GB as float32); a 330-KB PNG can
decode to 13000 x 13000 16-bit pixels. The budget (`media.max_frame_pixels`, default 8192 x 8192 = 67 M pixels
per frame) is checked against the container/stream or image header first and, for video, again on every
decoded frame before it is converted to RGB (a stream may change size mid-way).

`ContextBudget` does the same for the LLM context: media too long for it is refused from its header duration.

`DurationLimit` bounds how long media may be (the server's `max_media_seconds`, the LLM context) where the header
does not say: decoding stops and refuses (`MediaTooLong`) as soon as the decoded time passes it (a 459-KB raw H.264
stream can hold 30 minutes of frames and no duration at all).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from videosalmonn.errors import InputError, MediaError
from videosalmonn.media.timeline import SAMPLE_RATE, SECONDS_PER_SLOT, SLOTS_PER_CHUNK, audio_slots

DEFAULT_MAX_FRAME_PIXELS = 8192 * 8192  # 67 M pixels: an 8K frame fits, a decompression bomb does not


def check_frame_pixels(path: str | Path, width: int, height: int, max_pixels: int | None, what: str = "frame"):
    """MediaError naming the file and the limit if a `width` x `height` frame is over `max_pixels` (None: no limit)."""
    if max_pixels is not None and width * height > max_pixels:
        raise MediaError(
            path,
            f"{what} too large: {width}x{height} = {width * height / 1e6:.1f} M pixels, over the decoded-pixel "
            f"budget of {max_pixels / 1e6:.1f} M (media.max_frame_pixels); not decoded",
        )


@dataclass(frozen=True)
class ContextBudget:
    """The LLM context as a media budget, so that media too long for it is refused from its header duration,
    before anything is decoded or allocated (a 1.6-KB mp4 can state 10 hours: 43 GB of frames).

    `tokens(frames, is_image, audio_slots)` is what the connector gives the LLM (`multires.media_token_count`);
    media whose tokens alone fill `max_tokens` can never be answered. `chunk_padding`: audio fills 60 slots per
    started 30-s chunk (`media.limits: official`), else its own 0.5-s slots (`timeline.audio_slots`).
    """

    max_tokens: int
    tokens: Callable[[int, bool, int], int]
    chunk_padding: bool

    def check(self, path: str | Path, frames: int, is_image: bool, audio_seconds: float, seconds: float):
        """InputError naming the file if `frames` + `audio_seconds` of audio (spanning `seconds`) cannot fit."""
        n = self.tokens(frames, is_image, audio_slots(round(audio_seconds * SAMPLE_RATE), self.chunk_padding))
        if n >= self.max_tokens:
            raise InputError(
                f"{path}: {seconds:.1f} s of media is {n} media tokens; the LLM takes at most {self.max_tokens} "
                f"(shorter media, a start/end span or --limits official); not decoded"
            )

    def max_video_seconds(self) -> float:
        """The longest video (2 frames a second, no audio) whose frames can still fit: a bound for decoding."""
        low, high = 0, self.max_tokens + 1  # tokens(low) < max_tokens <= tokens(high): each frame costs >= 1 token
        while high - low > 1:
            mid = (low + high) // 2
            low, high = (mid, high) if self.tokens(mid, False, 0) < self.max_tokens else (low, mid)
        return low * SECONDS_PER_SLOT

    def max_audio_seconds(self, frames: int, is_image: bool) -> float:
        """The longest audio (whole 30-s chunks with `chunk_padding`, else whole 0.5-s slots) that still fits next
        to `frames`."""
        step = SLOTS_PER_CHUNK if self.chunk_padding else 1  # slots added by one more chunk / slot of audio
        if self.tokens(frames, is_image, 0) >= self.max_tokens:
            return 0.0
        low, high = 0, 1  # tokens(low * step) < max_tokens <= tokens(high * step)
        while self.tokens(frames, is_image, high * step) < self.max_tokens:
            low, high = high, 2 * high
        while high - low > 1:
            mid = (low + high) // 2
            low, high = (mid, high) if self.tokens(frames, is_image, mid * step) < self.max_tokens else (low, mid)
        return low * step * SECONDS_PER_SLOT


CONTEXT_LIMIT = "the most the LLM context takes (shorter media, a start/end span or --limits official)"


class MediaTooLong(MediaError, InputError):
    """Media longer than a `DurationLimit`: a MediaError naming the file, and an InputError (the request asks
    for too much)."""


@dataclass(frozen=True)
class DurationLimit:
    """Media lasting more than `seconds` (from the file start) is refused; `name` says whose limit it is.

    `header`: whether a longer header duration is refused before decoding too (False where the caller checks
    header durations more precisely, e.g. the LLM context in tokens). Decoding always stops past `seconds`.
    """

    seconds: float
    name: str = "max_seconds"
    header: bool = True

    def __post_init__(self):
        if not self.seconds >= 0:  # 0: nothing fits (e.g. no audio chunk next to the frames)
            raise ValueError(f"a duration limit must not be negative, got {self.seconds}")

    @property
    def exact(self) -> Fraction:
        return Fraction(self.seconds)

    def error(self, path: str | Path, what: str, stated: float | None = None) -> MediaTooLong:
        """The one-line refusal: from the header (`stated` seconds) or while decoding (None)."""
        if stated is not None:
            problem = f"{what} lasts {stated:.1f} s, more than {self.seconds:.1f} s, {self.name}; not decoded"
            return MediaTooLong(path, problem)
        return MediaTooLong(path, f"{what} lasts more than {self.seconds:.1f} s, {self.name}; decoding stopped")


def as_limit(limit: float | DurationLimit | None) -> DurationLimit | None:
    """A bare number of seconds as a DurationLimit named `max_seconds` that bounds decoding only (the header
    duration is the caller's to check)."""
    if limit is None or isinstance(limit, DurationLimit):
        return limit
    return DurationLimit(float(limit), "max_seconds", header=False)


def tightest(*limits: DurationLimit | None) -> DurationLimit | None:
    """The limit with the fewest seconds (None if there is none)."""
    given = [limit for limit in limits if limit is not None]
    return min(given, key=lambda limit: limit.seconds) if given else None
