"""Writing media files from memory: mono WAV from samples, a lossless video from images (one frame in memory).

Used where a caller holds decoded media that the loaders read from files: noisy evaluation copies, images sent
to the server as frames, lmms-eval's audio arrays and PIL images."""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from videosalmonn.media.timeline import SECONDS_PER_SLOT

FRAME_RATE = Fraction(1) / Fraction(SECONDS_PER_SLOT).limit_denominator(1000)  # 2 fps: one frame per 0.5-s slot
AUDIO_BLOCK = 4096  # samples per written WAV frame


def write_wav(path: str | Path, samples: np.ndarray, rate: int) -> None:
    """(N,) float samples at `rate` Hz -> a mono 32-bit float WAV (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.ascontiguousarray(np.asarray(samples, dtype=np.float32)[None])  # (1, N)
    with av.open(str(path), "w", format="wav") as out:
        stream = out.add_stream("pcm_f32le", rate=rate, layout="mono")
        for start in range(0, x.shape[1], AUDIO_BLOCK):
            frame = av.AudioFrame.from_ndarray(x[:, start : start + AUDIO_BLOCK], "flt", "mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


def write_frames_video(images: Iterable[Image.Image], path: str | Path) -> None:
    """Images (drawn one at a time: a generator keeps one in memory) -> one lossless video (FFV1 in Matroska) at
    FRAME_RATE; images of another size than the first are resized to it."""
    with av.open(str(path), "w", format="matroska") as out:
        stream = None
        for i, img in enumerate(images):
            if stream is None:
                stream = out.add_stream("ffv1", rate=FRAME_RATE)
                stream.width, stream.height, stream.pix_fmt = img.width, img.height, "bgr0"
            elif img.size != (stream.width, stream.height):
                img = img.resize((stream.width, stream.height))
            frame = av.VideoFrame.from_image(img)
            frame.pts, frame.time_base = i, 1 / FRAME_RATE
            out.mux(stream.encode(frame))
        if stream is not None:
            out.mux(stream.encode())
