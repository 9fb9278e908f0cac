"""Audio decoding: any container/codec FFmpeg reads -> 16 kHz mono float32 (spec §1.5).

The official code reads the file with `soundfile.read` (float64), ignores its sample rate and keeps channel 0.
We decode with PyAV instead, so mp3, ogg/opus and the AAC track of an mp4 work too, and we resample what is
not already at 16 kHz:

    file --demux/decode--> (C, n) frames at the source rate --channels--> (n,) mono --resample--> 16 kHz

* A 16-kHz file is never resampled, and integer PCM is scaled exactly like libsndfile does (int16 / 2**15,
  int32 / 2**31), so its samples equal what the official `soundfile.read` gives.
* `channels="first"` keeps channel 0 (official); `"downmix"` averages all channels (the whole sound).
* Channels are reduced before resampling, so the resampler only ever sees mono planar float (the packed vs
  planar layout pitfall of PyAV cannot bite, and unusual channel layouts such as "2 channels" need no mapping).
* Lossy codecs add encoder delay/padding (AAC: priming + a partial last frame); the decoded audio is trimmed
  to the stream duration when the container states it.
* Bad input is a one-line `MediaError`. A cut-off file is one too when it can be told: lossless streams whose
  header states a longer length, WAV files whose `data` chunk is shorter than declared (FFmpeg itself decodes
  those silently). A lossy stream that decodes to clearly less than its stated length (a cut-off mp4) is
  kept and reported in `Waveform.cut`; one without a stated length cannot be told from a short one.
* `max_seconds` (seconds or a `budget.DurationLimit`) bounds decoding: a longer stated length is refused before
  decoding, and past it decoding stops with a one-line MediaTooLong, an InputError (no hours of audio in memory).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np
import torch
from torch import Tensor

from videosalmonn.errors import MediaError
from videosalmonn.media.budget import DurationLimit, as_limit
from videosalmonn.media.files import check_file
from videosalmonn.media.timeline import SAMPLE_RATE

ChannelPolicy = Literal["first", "downmix"]

# Integer PCM -> float in [-1, 1): the divisors libsndfile (hence soundfile.read) uses, by sample width.
_INT_SCALE = {np.dtype(np.int16): 2.0**15, np.dtype(np.int32): 2.0**31, np.dtype(np.int64): 2.0**63}
_U8_OFFSET = 128.0

# Encoder padding is at most a few codec frames (AAC: 1024 priming + < 1024 padding samples). A larger excess
# over the stated duration means the duration is an estimate (e.g. VBR mp3 without header): keep everything.
_MAX_TRIM_SECONDS = 0.25
# Lossless codecs state the exact length in their header: decoding much less than that means a cut-off file.
_LOSSLESS_PREFIXES = ("pcm_", "flac", "alac", "wavpack", "tta", "ape")
_TRUNCATION_TOLERANCE_SECONDS = 0.05
# Lossy streams: the stated length may be an estimate (mp3 from its bitrate); only a clear shortfall is reported.
_LOSSY_TRUNCATION_TOLERANCE_SECONDS = 0.5
_LOSSY_TRUNCATION_TOLERANCE_FRACTION = 0.05

# RIFF/WAV layout: "RIFF" <size> "WAVE", then chunks of <4-byte id> <4-byte little-endian size> <data>.
_RIFF_HEADER_BYTES = 12
_RIFF_CHUNK_HEADER_BYTES = 8
_RIFF_UNKNOWN_SIZE = 0xFFFFFFFF  # written by streaming encoders that cannot seek back

# Samples handed to the resampler per call (bounded memory for long files).
_RESAMPLE_BLOCK = 1 << 16


@dataclass(frozen=True)
class Waveform:
    """Decoded audio at 16 kHz mono."""

    samples: Tensor  # (N,) float32 at SAMPLE_RATE
    source_rate: int  # Hz of the file's audio stream
    source_channels: int  # channels of the file's audio stream
    seconds: float  # N / SAMPLE_RATE
    cut: str | None = None  # the stream ends before its stated length (a truncated lossy file)


def load_audio(
    path: str | Path, channels: ChannelPolicy = "downmix", max_seconds: float | DurationLimit | None = None
) -> Waveform:
    """Decode the first audio stream of `path` to 16 kHz mono float32.

    Raises `MediaError` (one line naming the file) when the file is missing, empty, not media, has no audio
    track, is truncated (lossless) or decodes to no samples; `InputError` when it lasts more than `max_seconds`
    (decoding stops there).
    """
    if channels not in ("first", "downmix"):
        raise ValueError(f"channels must be 'first' or 'downmix', got {channels!r}")
    path, limit = Path(path), as_limit(max_seconds)
    with _open(path) as container:
        if not container.streams.audio:
            raise MediaError(path, "has no audio track")
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate or stream.rate
        if not rate:
            raise MediaError(path, "audio track has no sample rate")
        stated = _stated_seconds(stream)
        if limit is not None and limit.header and stated is not None and stated > limit.seconds:
            raise limit.error(path, "audio", stated)
        mono, n_channels = _decode_mono(path, container, stream, channels, limit)
        codec = stream.codec_context.name
        is_wav = container.format.name == "wav"
    if mono.size == 0:
        raise MediaError(path, "audio track decodes to no samples")
    _check_not_truncated(path, codec, mono.size / rate, stated)
    if is_wav:
        _check_wav_complete(path)
    samples = torch.from_numpy(mono) if rate == SAMPLE_RATE else _resample(mono, rate)
    samples = _trim_to(samples, stated)
    seconds = samples.numel() / SAMPLE_RATE
    return Waveform(
        samples=samples,
        source_rate=int(rate),
        source_channels=n_channels,
        seconds=seconds,
        cut=_lossy_shortfall(seconds, stated),
    )


def audio_header_seconds(path: str | Path) -> float | None:
    """Length of the first audio track as its header states it (stream, else container); None if unknown or
    if there is no audio track. Nothing is decoded."""
    path = Path(path)
    with _open(path) as container:
        if not container.streams.audio:
            return None
        stated = _stated_seconds(container.streams.audio[0])
        if stated is None and container.duration is not None and container.duration > 0:
            stated = container.duration / av.time_base
        return stated


def has_audio_stream(path: str | Path) -> bool:
    """Whether the file has an audio track (MediaError if it cannot be opened as media at all)."""
    path = Path(path)
    with _open(path) as container:
        return len(container.streams.audio) > 0


# ------------------------------------------------------------------------------------------- opening


def _open(path: Path):
    """`av.open` with the usual failures turned into one-line MediaErrors."""
    check_file(path)
    try:
        return av.open(str(path), mode="r")
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise MediaError(path, f"cannot be read as audio/video ({_reason(e)})") from None


def _reason(e: Exception) -> str:
    text = getattr(e, "strerror", None) or str(e).strip() or type(e).__name__
    return text.splitlines()[0]


# ------------------------------------------------------------------------------------------ decoding


def _decode_mono(
    path: Path, container, stream, channels: ChannelPolicy, limit: DurationLimit | None = None
) -> tuple[np.ndarray, int]:
    """All frames of `stream`, reduced to one channel, at the source rate: ((n,) float32, source channels).
    MediaTooLong as soon as more than `limit` seconds are decoded."""
    stream.thread_type = "AUTO"
    rate = stream.codec_context.sample_rate or stream.rate
    max_samples = None if limit is None else math.ceil(limit.seconds * rate)
    pieces: list[np.ndarray] = []
    n_channels = stream.codec_context.channels
    total = 0
    try:
        for frame in container.decode(stream):
            planar = _to_planar_float64(frame)  # (C, n) float64
            n_channels = planar.shape[0]
            mono = planar[0] if channels == "first" else planar.mean(axis=0)
            pieces.append(mono.astype(np.float32))
            total += mono.size
            if max_samples is not None and total > max_samples:
                raise limit.error(path, "audio")
    except av.error.FFmpegError as e:
        raise MediaError(path, f"audio track cannot be decoded, file corrupt or truncated ({_reason(e)})") from None
    mono = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    return mono, int(n_channels)


def _to_planar_float64(frame: av.AudioFrame) -> np.ndarray:
    """(C, n) float64 samples of one decoded frame, scaled like libsndfile."""
    data = frame.to_ndarray()
    n_channels = len(frame.layout.channels)
    if not frame.format.is_planar:  # packed: (1, n*C) interleaved
        data = data.reshape(-1, n_channels).T  # (C, n)
    if data.dtype == np.uint8:
        return (data.astype(np.float64) - _U8_OFFSET) / _U8_OFFSET
    if data.dtype in _INT_SCALE:
        return data.astype(np.float64) / _INT_SCALE[data.dtype]
    return data.astype(np.float64)


def _stated_seconds(stream) -> float | None:
    """Duration of the audio stream as stored in the container (None when not stated)."""
    if stream.duration is None or stream.time_base is None or stream.duration <= 0:
        return None
    return float(stream.duration * stream.time_base)


def _check_not_truncated(path: Path, codec: str, decoded: float, stated: float | None):
    """Lossless streams state their exact length: much less decoded audio means the file was cut off."""
    if stated is None or not codec.startswith(_LOSSLESS_PREFIXES):
        return
    if decoded + _TRUNCATION_TOLERANCE_SECONDS < stated:
        raise MediaError(path, f"is truncated: the header says {stated:.2f} s of audio, only {decoded:.2f} s decode")


def _lossy_shortfall(decoded: float, stated: float | None) -> str | None:
    """A cut line when a (lossy) stream decodes to clearly less than its stated length; lossless ones fail in
    `_check_not_truncated` before this (their length is exact)."""
    if stated is None:
        return None
    tolerance = max(_LOSSY_TRUNCATION_TOLERANCE_SECONDS, _LOSSY_TRUNCATION_TOLERANCE_FRACTION * stated)
    if decoded + tolerance >= stated:
        return None
    return f"audio ends at {decoded:.2f} s of the {stated:.2f} s the header states (truncated file?)"


def _check_wav_complete(path: Path):
    """A cut-off WAV decodes without error (FFmpeg clamps its length to the file): compare the `data` chunk
    size declared in the RIFF header with the bytes present."""
    declared, available = _wav_data_sizes(path)
    if declared is not None and available < declared:
        raise MediaError(
            path, f"is truncated: the WAV header declares {declared} bytes of audio, the file holds {available}"
        )


def _wav_data_sizes(path: Path) -> tuple[int | None, int]:
    """(declared, present) bytes of the RIFF `data` chunk; declared None when unknown (streamed/RF64 header)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        if f.read(4) != b"RIFF":
            return None, size
        f.seek(_RIFF_HEADER_BYTES)
        while True:
            header = f.read(_RIFF_CHUNK_HEADER_BYTES)
            if len(header) < _RIFF_CHUNK_HEADER_BYTES:
                return None, size
            chunk_id, chunk_size = header[:4], int.from_bytes(header[4:], "little")
            if chunk_id == b"data":
                start = f.tell()
                declared = None if chunk_size in (0, _RIFF_UNKNOWN_SIZE) else chunk_size
                return declared, size - start
            f.seek(chunk_size + (chunk_size & 1), 1)  # chunks are word-aligned


# ---------------------------------------------------------------------------------------- resampling


def _resample(mono: np.ndarray, rate: int) -> Tensor:
    """(n,) float32 at `rate` -> (N,) float32 at SAMPLE_RATE with FFmpeg's resampler (flushed)."""
    resampler = av.AudioResampler(format="fltp", layout="mono", rate=SAMPLE_RATE)
    out: list[np.ndarray] = []
    for start in range(0, mono.size, _RESAMPLE_BLOCK):
        block = np.ascontiguousarray(mono[None, start : start + _RESAMPLE_BLOCK])  # (1, n) planar
        frame = av.AudioFrame.from_ndarray(block, format="fltp", layout="mono")
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        out += [f.to_ndarray()[0] for f in resampler.resample(frame)]
    out += [f.to_ndarray()[0] for f in resampler.resample(None)]  # flush the filter's delay line
    return torch.from_numpy(np.concatenate(out).astype(np.float32, copy=False))


def _trim_to(samples: Tensor, stated: float | None) -> Tensor:
    """Drop encoder padding past the stated stream duration (small excess only, see _MAX_TRIM_SECONDS)."""
    if stated is None:
        return samples
    target = round(stated * SAMPLE_RATE)
    excess = samples.numel() - target
    if 0 < excess <= _MAX_TRIM_SECONDS * SAMPLE_RATE:
        return samples[:target]
    return samples
