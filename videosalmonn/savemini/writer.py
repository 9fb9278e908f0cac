"""Frames and samples -> files, each written to a temporary name in its directory and renamed (atomic).

    write_video(path, frames, audio)  .mp4: H.264 yuv420p at FPS (x264 VIDEO_PRESET, CRF VIDEO_CRF, one thread)
                                      + AAC mono at SAMPLE_RATE and AUDIO_BITRATE (FFmpeg's "fast" coder: half the
                                      time of its default), no audio track when audio is None
    write_audio(path, audio)          .flac (or .wav: PCM16) mono at SAMPLE_RATE
    write_image(path, frame)          .jpg (quality JPEG_QUALITY) or .png, by suffix

One x264 thread: the world runs one writer per core. Frame i has pts i in a 1/FPS time base, so it is shown
at i / FPS; the AAC encoder's priming delay is in the MP4 edit list, so decoders start the audio at 0.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from PIL import Image

from videosalmonn.checkpoint import atomic_write
from videosalmonn.savemini.scene import FPS, SAMPLE_RATE

VIDEO_CRF = 23
VIDEO_PRESET = "ultrafast"  # 0.4 ms a frame; veryfast: 1.7x the CPU for a 2.3x smaller video (audio is most of a file)
AUDIO_BITRATE = 32_000  # bit/s, AAC mono at 16 kHz: coding error 22 dB below clean speech (48k: 27 dB, 1.4x the bytes)
AAC_FRAME = 1024  # samples per AAC frame
JPEG_QUALITY = 90
# One swscale context, reused for every frame of the process: 0.3 ms a frame where VideoFrame.reformat (a new
# context each call) takes 0.6 ms
_TO_YUV = VideoReformatter()


def write_video(path: str | Path, frames: np.ndarray, audio: np.ndarray | None) -> None:
    """frames (N, H, W, 3) uint8 RGB (H, W even) and audio (n,) float32 in [-1, 1] at SAMPLE_RATE -> MP4."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"frames must be (N, H, W, 3) uint8 with N >= 1, got {frames.shape} {frames.dtype}")
    atomic_write(path, lambda tmp: _encode_mp4(tmp, frames, audio))


def write_audio(path: str | Path, audio: np.ndarray) -> None:
    """(n,) float32 in [-1, 1] at SAMPLE_RATE -> .flac (16-bit) or .wav (PCM16), mono."""
    suffix = Path(path).suffix.lower()
    if suffix not in (".flac", ".wav"):
        raise ValueError(f"{path}: write_audio writes .flac or .wav")
    codec, fmt = ("flac", "flac") if suffix == ".flac" else ("pcm_s16le", "wav")
    atomic_write(path, lambda tmp: _encode_audio(tmp, fmt, codec, audio))


def write_image(path: str | Path, frame: np.ndarray) -> None:
    """(H, W, 3) uint8 RGB -> .jpg / .jpeg (quality JPEG_QUALITY) or .png."""
    suffix = Path(path).suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        save = lambda tmp: Image.fromarray(frame).save(tmp, format="JPEG", quality=JPEG_QUALITY)  # noqa: E731
    elif suffix == ".png":
        save = lambda tmp: Image.fromarray(frame).save(tmp, format="PNG")  # noqa: E731
    else:
        raise ValueError(f"{path}: write_image writes .jpg or .png")
    atomic_write(path, save)


# ---------------------------------------------------------------------------------------------- pieces


def _encode_mp4(tmp: str, frames: np.ndarray, audio: np.ndarray | None) -> None:
    n, h, w, _ = frames.shape
    with av.open(tmp, "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        video.codec_context.time_base = Fraction(1, FPS)
        video.options = {"preset": VIDEO_PRESET, "crf": str(VIDEO_CRF), "threads": "1"}
        sound = None
        if audio is not None:
            sound = out.add_stream("aac", rate=SAMPLE_RATE, layout="mono", options={"aac_coder": "fast"})
            sound.bit_rate = AUDIO_BITRATE
        frame = None
        for i in range(n):
            if frame is None or not np.array_equal(frames[i], frames[i - 1]):  # a still frame is converted once
                frame = _TO_YUV.reformat(av.VideoFrame.from_ndarray(frames[i], format="rgb24"), format="yuv420p")
            frame.pts = i
            frame.time_base = Fraction(1, FPS)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            _encode_samples(out, sound, audio, AAC_FRAME)


def _encode_audio(tmp: str, fmt: str, codec: str, audio: np.ndarray) -> None:
    with av.open(tmp, "w", format=fmt) as out:
        _encode_samples(out, out.add_stream(codec, rate=SAMPLE_RATE, layout="mono"), audio, 4096)


def _encode_samples(out, stream, audio: np.ndarray, block: int) -> None:
    """Feed (n,) float32 to `stream` in `block`-sample frames of the encoder's own sample format (mono: packed
    and planar are the same bytes; s16 rounds like FFmpeg's converter)."""
    samples = np.clip(np.asarray(audio, np.float32), -1.0, 1.0)
    if samples.ndim != 1:
        raise ValueError(f"audio must be (n,) float32, got {samples.shape}")
    fmt = stream.codec_context.format.name
    if fmt == "s16":
        samples = np.clip(np.rint(samples * 32768), -32768, 32767).astype(np.int16)
    elif fmt not in ("flt", "fltp"):
        raise ValueError(f"encoder {stream.codec_context.name} wants {fmt} samples")
    for start in range(0, samples.size, block):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[None, start : start + block]), fmt, "mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = start
        frame.time_base = Fraction(1, SAMPLE_RATE)
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))
