"""Write the committed test media (`python tests/make_fixtures.py`) and generate odd media inside tests.

tests/assets/clip2s.mp4: 2.0 s, 128x96, 25 fps (50 frames), H.264 yuv420p with B-frames and a keyframe every
second; a white 16x16 square moves right by 2 px per frame over a dark background whose red level counts
the frames; a 440 Hz sine (amplitude 0.5) as AAC, 44.1 kHz stereo. Encoded single-threaded, so the bytes
depend only on the PyAV/FFmpeg build.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

ASSETS = Path(__file__).resolve().parent / "assets"
CLIP2S = ASSETS / "clip2s.mp4"

CLIP_SIZE = (128, 96)  # width, height
CLIP_FPS = 25
CLIP_SECONDS = 2
SQUARE = 16  # side of the moving square (px)
SQUARE_STEP = 2  # px per frame
SQUARE_X0 = 8
TONE_HZ = 440
AUDIO_RATE = 44_100
AUDIO_FRAME = 1024  # AAC frame size (samples)
X264_OPTIONS = {"threads": "1", "g": str(CLIP_FPS), "crf": "30", "preset": "medium"}


def square_x(i: int, width: int) -> int:
    """Left edge of the square in frame i (wraps around narrow frames)."""
    return (SQUARE_X0 + SQUARE_STEP * i) % max(1, width - SQUARE)


def square_frame(i: int, width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8: dark background (red = frame index), white square at square_x(i)."""
    img = np.zeros((height, width, 3), np.uint8)
    img[..., 0] = (5 * i) % 200
    x, y = square_x(i, width), max(0, height // 2 - SQUARE // 2)
    img[y : y + SQUARE, x : x + SQUARE] = 255
    return img


def write_video(
    path: str | Path,
    *,
    size: tuple[int, int] = CLIP_SIZE,
    fps: int = CLIP_FPS,
    n_frames: int = CLIP_FPS * CLIP_SECONDS,
    pts_ms: list[int] | None = None,
    codec: str = "libx264",
    options: dict | None = None,
    container_format: str | None = None,
    audio_seconds: float | None = None,
) -> Path:
    """Encode the moving-square video; `pts_ms` gives variable frame times (milliseconds) instead of `fps`;
    `audio_seconds` adds a 440 Hz AAC stereo track of that length."""
    path = Path(path)
    width, height = size
    with av.open(str(path), "w", format=container_format) as out:
        stream = out.add_stream(codec, rate=1000 if pts_ms else fps, options=options or dict(X264_OPTIONS))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if pts_ms:
            stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        audio = _add_audio(out) if audio_seconds else None
        for i in range(len(pts_ms) if pts_ms else n_frames):
            frame = av.VideoFrame.from_ndarray(square_frame(i, width, height), format="rgb24")
            if pts_ms:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
        if audio is not None:
            _write_tone(out, audio, audio_seconds)
    return path


def _add_audio(out):
    audio = out.add_stream("aac", rate=AUDIO_RATE)
    audio.layout = "stereo"
    audio.bit_rate = 48_000
    return audio


def _write_tone(out, audio, seconds: float) -> None:
    n = round(seconds * AUDIO_RATE)
    t = np.arange(n) / AUDIO_RATE
    tone = (0.5 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)
    for start in range(0, n, AUDIO_FRAME):
        chunk = tone[start : start + AUDIO_FRAME]
        frame = av.AudioFrame.from_ndarray(np.stack([chunk, chunk]), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = AUDIO_RATE, start, Fraction(1, AUDIO_RATE)
        out.mux(audio.encode(frame))
    out.mux(audio.encode())


def main() -> None:
    ASSETS.mkdir(exist_ok=True)
    write_video(CLIP2S, audio_seconds=CLIP_SECONDS)
    print(f"wrote {CLIP2S} ({CLIP2S.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
