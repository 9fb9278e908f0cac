"""Audio decoding (videosalmonn.media.audio): exactness at 16 kHz, resampling, channels, containers, bad input."""

from __future__ import annotations

import wave
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from conftest import GOLDEN, needs_golden

from videosalmonn.errors import MediaError
from videosalmonn.media.audio import has_audio_stream, load_audio
from videosalmonn.media.timeline import SAMPLE_RATE

GOLDEN_WAV = GOLDEN / "media" / "4405327307.wav"
GOLDEN_FLAC = GOLDEN / "media" / "1272-128104-0000.flac"
GOLDEN_MP4 = GOLDEN / "media" / "4405327307.mp4"

_SAMPLE_DTYPES = {"s16": np.int16, "s32": np.int32, "flt": np.float32, "dbl": np.float64}


def write_audio(path, data: np.ndarray, rate: int, layout: str, codec: str, fmt: str, container: str | None = None):
    """Encode `data` (C, n) with PyAV. Integer formats take integer arrays as given; float formats floats."""
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = layout
        _encode_audio(out, stream, data, rate, fmt)


def _encode_audio(out, stream, data: np.ndarray, rate: int, fmt: str):
    block = stream.codec_context.frame_size or 1024
    planar = fmt.endswith("p")
    data = data.astype(_SAMPLE_DTYPES[fmt.rstrip("p")])
    for start in range(0, data.shape[1], block):
        chunk = data[:, start : start + block]
        array = chunk if planar else chunk.T.reshape(1, -1)  # packed: interleaved samples
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(array), format=fmt, layout=stream.layout.name)
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)


def write_video(path, seconds: float, audio: np.ndarray | None = None, rate: int = 44100):
    """A small mp4 (mpeg4 video, optional stereo AAC track from `audio` (2, n) float)."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 64, 64, "yuv420p"
        sound = out.add_stream("aac", rate=rate) if audio is not None else None  # all streams before muxing
        if sound is not None:
            sound.layout = "stereo"
        for i in range(round(seconds * 10)):
            img = np.full((64, 64, 3), i * 20 % 255, np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        if sound is not None:
            _encode_audio(out, sound, audio, rate, "fltp")


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * freq * np.arange(round(seconds * rate)) / rate)


def peak_hz(samples: torch.Tensor) -> float:
    spectrum = torch.fft.rfft(samples.double() * torch.hann_window(samples.numel(), dtype=torch.float64)).abs()
    return spectrum.argmax().item() * SAMPLE_RATE / samples.numel()


# --------------------------------------------------------------------------------------- exactness


@needs_golden
def test_golden_wav_equals_raw_pcm():
    with wave.open(str(GOLDEN_WAV)) as f:
        raw = np.frombuffer(f.readframes(f.getnframes()), np.int16).reshape(-1, f.getnchannels())
    first = load_audio(GOLDEN_WAV, channels="first")
    assert (first.source_rate, first.source_channels) == (16000, 2)
    assert torch.equal(first.samples, torch.from_numpy(raw[:, 0] / 32768).float())  # soundfile's values
    down = load_audio(GOLDEN_WAV, channels="downmix")
    assert torch.equal(down.samples, torch.from_numpy(raw.mean(1) / 32768).float())
    assert first.seconds == pytest.approx(379693 / 16000)


@needs_golden
def test_golden_flac_is_16k_mono():
    w = load_audio(GOLDEN_FLAC)
    assert (w.samples.shape, w.samples.dtype, w.source_rate, w.source_channels) == ((93680,), torch.float32, 16000, 1)
    assert torch.equal(w.samples * 32768, (w.samples * 32768).round())  # int16 / 2**15 exactly


@pytest.mark.parametrize(
    "codec,fmt,scale", [("pcm_s32le", "s32", 2.0**31), ("pcm_f32le", "flt", 1.0), ("pcm_s16le", "s16", 2.0**15)]
)
def test_16k_pcm_is_not_resampled(tmp_path, codec, fmt, scale):
    rng = np.random.default_rng(0)
    values = rng.uniform(-0.9, 0.9, (1, 4000))
    data = np.round(values * scale) if scale != 1.0 else values.astype(np.float32)
    path = tmp_path / "x.wav"
    write_audio(path, data, SAMPLE_RATE, "mono", codec, fmt)
    got = load_audio(path).samples
    assert torch.equal(got, torch.from_numpy(data[0] / scale).float())


# --------------------------------------------------------------------------------------- resampling


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
def test_resampled_tone_keeps_frequency_and_length(tmp_path, rate):
    path = tmp_path / f"tone{rate}.wav"
    write_audio(path, np.round(tone(1000, 1.0, rate)[None] * 32767), rate, "mono", "pcm_s16le", "s16")
    w = load_audio(path)
    assert w.source_rate == rate
    assert w.samples.numel() == SAMPLE_RATE and w.seconds == 1.0
    assert peak_hz(w.samples) == pytest.approx(1000, abs=1.5)
    assert w.samples[1000:-1000].abs().max().item() == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize(
    "name,codec,fmt,container",
    [
        ("x.mp3", "libmp3lame", "fltp", None),
        ("x.ogg", "libopus", "flt", None),
        ("x.m4a", "aac", "fltp", "mp4"),
        ("x.flac", "flac", "s16", None),
    ],
)
def test_compressed_formats(tmp_path, name, codec, fmt, container):
    data = np.stack([tone(440, 2.0, 48000)] * 2)
    if fmt == "s16":
        data = np.round(data * 32767)
    write_audio(tmp_path / name, data, 48000, "stereo", codec, fmt, container)
    w = load_audio(tmp_path / name)
    assert w.samples.numel() == 2 * SAMPLE_RATE  # encoder padding trimmed
    assert peak_hz(w.samples) == pytest.approx(440, abs=1.5)


def test_short_audio(tmp_path):
    write_audio(tmp_path / "a.wav", np.round(tone(440, 0.1, 16000)[None] * 32767), 16000, "mono", "pcm_s16le", "s16")
    write_audio(tmp_path / "b.wav", np.round(tone(440, 0.1, 44100)[None] * 32767), 44100, "mono", "pcm_s16le", "s16")
    assert load_audio(tmp_path / "a.wav").samples.numel() == 1600
    assert load_audio(tmp_path / "b.wav").samples.numel() == 1600


# ----------------------------------------------------------------------------------------- channels


def test_5_1_first_channel_and_downmix(tmp_path):
    levels = np.array([0.6, -0.2, 0.1, 0.3, -0.5, 0.05])[:, None]  # one DC level per channel
    data = np.round((levels + 0.1 * tone(300, 0.5, 16000)[None]) * 32767)  # (6, n)
    path = tmp_path / "surround.wav"
    write_audio(path, data, SAMPLE_RATE, "5.1", "pcm_s16le", "s16")
    first, down = load_audio(path, channels="first"), load_audio(path, channels="downmix")
    assert first.source_channels == 6
    assert torch.equal(first.samples, torch.from_numpy(data[0] / 32768).float())
    assert torch.allclose(down.samples, torch.from_numpy(data.mean(0) / 32768).float(), atol=1e-7)


def test_5_1_resampled(tmp_path):
    data = np.stack([tone(500 * (c + 1), 1.0, 48000, 0.3) for c in range(6)])
    write_audio(tmp_path / "s.m4a", data, 48000, "5.1", "aac", "fltp", "mp4")
    first = load_audio(tmp_path / "s.m4a", channels="first")
    assert first.samples.numel() == SAMPLE_RATE and first.source_channels == 6
    assert peak_hz(first.samples) == pytest.approx(500, abs=1.5)


# ---------------------------------------------------------------------------------------- video files


def test_mp4_audio_track(tmp_path):
    path = tmp_path / "clip.mp4"
    write_video(path, 1.0, np.stack([tone(440, 1.0, 44100)] * 2))
    assert has_audio_stream(path)
    w = load_audio(path)
    assert (w.source_rate, w.source_channels, w.samples.numel()) == (44100, 2, SAMPLE_RATE)
    assert peak_hz(w.samples) == pytest.approx(440, abs=1.5)


@needs_golden
def test_demo_mp4_audio_matches_wav():
    """The demo mp4's AAC track (44.1 kHz) and the demo wav are the same sound: no delay after decoding."""
    video, wav = load_audio(GOLDEN_MP4, "first").samples, load_audio(GOLDEN_WAV, "first").samples
    assert abs(video.numel() - wav.numel()) <= 2
    n = min(video.numel(), wav.numel())
    corr = torch.nn.functional.cosine_similarity(video[:n].double(), wav[:n].double(), dim=0)
    assert corr > 0.99


# ---------------------------------------------------------------------------------------- bad input


def _bad_inputs(tmp_path):
    good = tmp_path / "good.wav"
    write_audio(good, np.round(tone(440, 1.0, 16000)[None] * 32767), 16000, "mono", "pcm_s16le", "s16")
    clip = tmp_path / "clip.mp4"
    write_video(clip, 1.0, np.stack([tone(440, 1.0, 44100)] * 2))
    raw, mp4 = good.read_bytes(), clip.read_bytes()
    files = {
        "missing": (tmp_path / "missing.wav", "not found"),
        "directory": (tmp_path, "directory"),
        "empty": (tmp_path / "empty.wav", "empty"),
        "garbage": (tmp_path / "garbage.mp3", "cannot be read"),
        "truncated header": (tmp_path / "cut_header.wav", "cannot be read"),
        "truncated data": (tmp_path / "cut_data.wav", "truncated"),
        "truncated mp4": (tmp_path / "cut.mp4", "cannot be read"),
        "video only": (tmp_path / "silent.mp4", "has no audio track"),
        "no samples": (tmp_path / "nodata.wav", "no samples"),
    }
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "garbage.mp3").write_bytes(np.random.default_rng(0).bytes(5000))
    (tmp_path / "cut_header.wav").write_bytes(raw[:30])
    (tmp_path / "cut_data.wav").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "cut.mp4").write_bytes(mp4[: len(mp4) // 2])
    write_video(tmp_path / "silent.mp4", 1.0)
    with wave.open(str(tmp_path / "nodata.wav"), "wb") as f:
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(16000), f.writeframes(b"")
    return files


def test_bad_inputs_raise_one_line_media_error(tmp_path):
    for kind, (path, problem) in _bad_inputs(tmp_path).items():
        with pytest.raises(MediaError) as info:
            load_audio(path)
        message = str(info.value)
        assert str(path) in message and problem in message and "\n" not in message, (kind, message)
        assert info.value.__suppress_context__ or info.value.__cause__ is None, kind


def test_has_audio_stream(tmp_path):
    write_video(tmp_path / "silent.mp4", 0.5)
    assert not has_audio_stream(tmp_path / "silent.mp4")
    with pytest.raises(MediaError, match="not found"):
        has_audio_stream(tmp_path / "nothing.mp4")


def test_bad_channel_policy(tmp_path):
    with pytest.raises(ValueError):
        load_audio(tmp_path / "x.wav", channels="left")
