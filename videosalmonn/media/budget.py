"""Decoded-pixel budget: a frame or image is refused from its header size, before anything is decoded.

A 560-KB file can hold two 16000 x 16000 PNG frames (0.77 GB each as RGB, 3 GB as float32); a 330-KB PNG can
decode to 13000 x 13000 16-bit pixels. The budget (`media.max_frame_pixels`, default 8192 x 8192 = 67 M pixels
per frame) is checked against the container/stream or image header first and, for video, again on every
decoded frame before it is converted to RGB (a stream may change size mid-way).

`ContextBudget` does the same for the LLM context: media too long for it is refused from its header duration.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from videosalmonn.errors import InputError, MediaError
from videosalmonn.media.timeline import WHISPER_CHUNK_SECONDS

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

    `tokens(frames, is_image, audio_chunks)` is what the connector gives the LLM (`multires.media_token_count`);
    media whose tokens alone fill `max_tokens` can never be answered.
    """

    max_tokens: int
    tokens: Callable[[int, bool, int], int]

    def check(self, path: str | Path, frames: int, is_image: bool, audio_seconds: float, seconds: float):
        """InputError naming the file if `frames` + `audio_seconds` of audio (spanning `seconds`) cannot fit."""
        n = self.tokens(frames, is_image, audio_chunks(audio_seconds))
        if n >= self.max_tokens:
            raise InputError(
                f"{path}: {seconds:.1f} s of media is {n} media tokens; the LLM takes at most {self.max_tokens} "
                f"(shorter media, a start/end span or --limits official); not decoded"
            )

    def max_audio_seconds(self, frames: int, is_image: bool) -> float:
        """The longest audio (whole 30-s chunks) that still fits next to `frames`."""
        chunks = 0
        while chunks < self.max_tokens + frames and self.tokens(frames, is_image, chunks + 1) < self.max_tokens:
            chunks += 1
        return float(chunks * WHISPER_CHUNK_SECONDS)


def audio_chunks(seconds: float) -> int:
    """30-s Whisper chunks of `seconds` of audio (`features.split_chunks`)."""
    return math.ceil(seconds / WHISPER_CHUNK_SECONDS - 1e-9) if seconds > 0 else 0
