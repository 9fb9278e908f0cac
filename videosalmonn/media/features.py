"""Audio encoder inputs in pure torch: Whisper log-mel and BEATs Kaldi fbank (spec §1.5-§1.7).

Both reproduce the official preprocessing in float32:

* `whisper_log_mel`: transformers 4.40.1 `WhisperFeatureExtractor._torch_extract_fbank_features` (STFT with a
  periodic Hann window, Slaney mel filters, log10, dynamic range 8, (x + 4) / 4) on a window zero-padded to 30 s.
* `kaldi_fbank`: `torchaudio.compliance.kaldi.fbank` (pure torch there too) with the defaults BEATs relies on:
  povey window, no dither, DC offset removed, pre-emphasis 0.97, snip_edges, power spectrum, log.
  torchaudio does not import on our machines, hence the port (same operations, same float32 order).

Long audio is cut into 30-s chunks (`audio_features`); within 30 s this is exactly the official single window.
The audio fills its own 0.5-s slots, or with `media.limits: official` 60 per started chunk (`timeline.audio_slots`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers.audio_utils import mel_filter_bank

from videosalmonn.media.timeline import (
    BEATS_FBANK_MEAN,
    BEATS_FBANK_STD,
    BEATS_FRAME_LENGTH,
    BEATS_FRAME_SHIFT,
    BEATS_N_MELS,
    OFFICIAL_MIN_AUDIO_SECONDS,
    SAMPLE_RATE,
    SLOTS_PER_CHUNK,
    WHISPER_CHUNK_SAMPLES,
    WHISPER_HOP,
    WHISPER_N_FFT,
    WHISPER_N_MELS,
    audio_slots,
)
from videosalmonn.types import AudioFeatures

WHISPER_MAX_FREQUENCY = 8000.0  # Hz, top of the Whisper mel filters (= Nyquist at 16 kHz)
WHISPER_LOG_FLOOR = 1e-10  # clamp before log10
WHISPER_DYNAMIC_RANGE = 8.0  # log10 units kept below the maximum (80 dB)
WHISPER_LOG_OFFSET = 4.0  # (x + 4) / 4 maps the range to about [-1, 1]

BEATS_WAVEFORM_SCALE = 2**15  # BEATs feeds int16-scaled samples to the fbank
KALDI_PREEMPHASIS = 0.97
KALDI_POVEY_POWER = 0.85  # povey window = hann(periodic=False) ** 0.85
KALDI_LOW_FREQUENCY = 20.0  # Hz, torchaudio's default low_freq
KALDI_MEL_BREAK = 700.0  # Kaldi mel scale: 1127 ln(1 + f / 700)
KALDI_MEL_FACTOR = 1127.0

MIN_CHUNK_SAMPLES = OFFICIAL_MIN_AUDIO_SECONDS * SAMPLE_RATE  # 48,000: shorter chunks are zero-padded to this


# ------------------------------------------------------------------------------------- Whisper log-mel


def whisper_mel_filters() -> Tensor:
    """(n_fft//2 + 1, n_mels) = (201, 80) float64 Slaney-scale, Slaney-normalised triangular filters.

    transformers' own `audio_utils.mel_filter_bank`, called as `WhisperFeatureExtractor` calls it; the caller
    casts to float32 like the feature extractor does.
    """
    filters = mel_filter_bank(
        num_frequency_bins=WHISPER_N_FFT // 2 + 1,
        num_mel_filters=WHISPER_N_MELS,
        min_frequency=0.0,
        max_frequency=WHISPER_MAX_FREQUENCY,
        sampling_rate=SAMPLE_RATE,
        norm="slaney",
        mel_scale="slaney",
    )
    return torch.from_numpy(filters)


@functools.cache
def _whisper_filters() -> Tensor:
    return whisper_mel_filters().to(torch.float32)  # (201, 80)


def whisper_log_mel_batch(chunks: Tensor) -> Tensor:
    """(C, 480000) float32 waveforms at 16 kHz -> (C, 80, 3000) Whisper log-mel, each normalised on its own."""
    if chunks.dim() != 2 or chunks.shape[1] != WHISPER_CHUNK_SAMPLES:
        raise ValueError(f"expected (C, {WHISPER_CHUNK_SAMPLES}) samples, got {tuple(chunks.shape)}")
    chunks = chunks.to(torch.float32)
    window = torch.hann_window(WHISPER_N_FFT, dtype=torch.float32, device=chunks.device)
    stft = torch.stft(
        chunks, WHISPER_N_FFT, WHISPER_HOP, window=window, center=True, pad_mode="reflect", return_complex=True
    )  # (C, 201, 3001)
    power = stft[..., :-1].abs() ** 2  # (C, 201, 3000)
    filters = _whisper_filters().to(chunks.device).T  # (80, 201)
    # one matmul per chunk: a batched (C, 201, 3000) matmul may take other BLAS kernels than C = 1 (seen with AVX2
    # forced), and a chunk must give the same features alone or in any batch
    mel = torch.stack([filters @ p for p in power])  # (C, 80, 3000)
    log = torch.clamp(mel, min=WHISPER_LOG_FLOOR).log10()
    peak = log.amax(dim=(1, 2), keepdim=True)  # (C, 1, 1)
    log = torch.maximum(log, peak - WHISPER_DYNAMIC_RANGE)
    return (log + WHISPER_LOG_OFFSET) / WHISPER_LOG_OFFSET


def whisper_log_mel(samples: Tensor) -> Tensor:
    """(N,) samples at 16 kHz, N <= 480000 -> (80, 3000) log-mel of the window zero-padded to 30 s."""
    if samples.dim() != 1 or samples.numel() > WHISPER_CHUNK_SAMPLES:
        raise ValueError(f"expected (N,) with N <= {WHISPER_CHUNK_SAMPLES}, got {tuple(samples.shape)}")
    padded = F.pad(samples.to(torch.float32), (0, WHISPER_CHUNK_SAMPLES - samples.numel()))
    return whisper_log_mel_batch(padded[None])[0]


# ---------------------------------------------------------------------------------------- Kaldi fbank


def _kaldi_mel(hz: Tensor | float) -> Tensor | float:
    if isinstance(hz, Tensor):
        return KALDI_MEL_FACTOR * (1.0 + hz / KALDI_MEL_BREAK).log()
    return KALDI_MEL_FACTOR * math.log(1.0 + hz / KALDI_MEL_BREAK)


@functools.cache
def kaldi_mel_banks(n_mels: int, padded_window: int, sample_rate: int, low_freq: float) -> Tensor:
    """(n_mels, padded_window//2 + 1) float32 triangular filters on the Kaldi mel scale.

    Same float32 arithmetic as torchaudio `kaldi.get_mel_banks` (no VTLN), plus the zero column for the
    Nyquist bin that `fbank` appends.
    """
    n_bins = padded_window // 2
    mel_low, mel_high = _kaldi_mel(low_freq), _kaldi_mel(sample_rate / 2)
    delta = (mel_high - mel_low) / (n_mels + 1)
    b = torch.arange(n_mels).unsqueeze(1)  # (M, 1)
    left, center, right = mel_low + b * delta, mel_low + (b + 1.0) * delta, mel_low + (b + 2.0) * delta
    mel = _kaldi_mel((sample_rate / padded_window) * torch.arange(float(n_bins))).unsqueeze(0)  # (1, K)
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    banks = torch.max(torch.zeros(1), torch.min(up, down))  # (M, K)
    return F.pad(banks, (0, 1))  # (M, K+1)


def kaldi_fbank(
    waveform: Tensor,
    n_mels: int = BEATS_N_MELS,
    sample_rate: int = SAMPLE_RATE,
    frame_length: int = BEATS_FRAME_LENGTH,
    frame_shift: int = BEATS_FRAME_SHIFT,
    preemphasis: float = KALDI_PREEMPHASIS,
    low_freq: float = KALDI_LOW_FREQUENCY,
) -> Tensor:
    """(N,) waveform -> (F, n_mels) log mel filterbank, F = 1 + (N - frame_length) // frame_shift.

    torchaudio.compliance.kaldi.fbank with dither 0, remove_dc_offset, povey window, snip_edges, use_power,
    use_log_fbank (the settings of BEATs.preprocess).
    """
    waveform = waveform.to(torch.float32).reshape(-1)
    if waveform.numel() < frame_length:
        return waveform.new_zeros(0, n_mels)
    n_frames = 1 + (waveform.numel() - frame_length) // frame_shift
    padded_window = 1 << (frame_length - 1).bit_length()  # next power of two: 512
    frames = waveform.as_strided((n_frames, frame_length), (frame_shift, 1))  # (F, L)
    frames = frames - frames.mean(dim=1, keepdim=True)  # remove DC offset
    previous = F.pad(frames.unsqueeze(0), (1, 0), mode="replicate").squeeze(0)[:, :-1]
    frames = frames - preemphasis * previous
    window = torch.hann_window(frame_length, periodic=False, dtype=torch.float32).pow(KALDI_POVEY_POWER)
    frames = F.pad(frames * window, (0, padded_window - frame_length))  # (F, 512)
    power = torch.fft.rfft(frames).abs().pow(2.0)  # (F, 257)
    banks = kaldi_mel_banks(n_mels, padded_window, sample_rate, low_freq).to(waveform.device)
    mel = power @ banks.T  # (F, M)
    return torch.max(mel, torch.tensor(torch.finfo(torch.float32).eps)).log()


def beats_fbank(samples: Tensor, fp16_waveform: bool = False) -> Tensor:
    """(N,) samples in [-1, 1] -> (F, 128) normalised fbank, as `BEATs.preprocess`.

    `fp16_waveform=True` rounds the samples through float16 first: the released model runs in fp16 and casts
    the waveform to the model dtype before BEATs casts it back to float32 (spec §1.7, Appendix A.1).
    """
    samples = samples.to(torch.float32)
    if fp16_waveform:
        samples = samples.to(torch.float16).to(torch.float32)
    fbank = kaldi_fbank(samples * BEATS_WAVEFORM_SCALE)  # (F, 128)
    return (fbank - BEATS_FBANK_MEAN) / (2 * BEATS_FBANK_STD)


# ------------------------------------------------------------------------------------------ chunking


def split_chunks(samples: Tensor) -> list[Tensor]:
    """(N,) -> 30-s chunks (the last may be shorter), each zero-padded to at least 3 s (official minimum)."""
    if samples.dim() != 1 or samples.numel() == 0:
        raise ValueError(f"expected a non-empty (N,) waveform, got {tuple(samples.shape)}")
    chunks = list(samples.split(WHISPER_CHUNK_SAMPLES))
    return [F.pad(c, (0, max(0, MIN_CHUNK_SAMPLES - c.numel()))) for c in chunks]


def audio_features(samples: Tensor, fp16_waveform: bool = False, *, chunk_padding: bool) -> AudioFeatures:
    """(N,) 16-kHz waveform -> Whisper log-mel (C, 80, 3000) and BEATs fbank C x (F_c, 128), C = ceil(N / 30 s),
    and the audio's slots: ceil(N / 0.5 s), or C*60 with `chunk_padding` (`media.limits: official`).

    For N <= 30 s this is the official single window: mel of the audio zero-padded to 30 s, fbank of the audio
    zero-padded to at least 3 s. Without chunk padding the encoder frames past the audio's slots are dropped
    downstream (zeroed, no windows made for them).
    """
    return _chunk_features(
        split_chunks(samples.to(torch.float32)), fp16_waveform, audio_slots(samples.numel(), chunk_padding)
    )


def audio_windows(
    samples: Tensor, fp16_waveform: bool = False, *, chunk_padding: bool, chunks: int = 1
) -> Iterator[AudioFeatures]:
    """`audio_features` `chunks` 30-s chunks at a time, for long audio: window w holds chunks [w*chunks, ...)
    and their slots (all 60 of a full chunk; the audio's own in the last). The windows' rows concatenate to
    `audio_features`' (the same per-chunk computations), and only one window's features exist at once."""
    pieces = split_chunks(samples.to(torch.float32))
    total = audio_slots(samples.numel(), chunk_padding)
    for first in range(0, len(pieces), chunks):
        part = pieces[first : first + chunks]
        yield _chunk_features(part, fp16_waveform, min(total - first * SLOTS_PER_CHUNK, len(part) * SLOTS_PER_CHUNK))


def _chunk_features(chunks: list[Tensor], fp16_waveform: bool, slots: int) -> AudioFeatures:
    windows = torch.stack([F.pad(c, (0, WHISPER_CHUNK_SAMPLES - c.numel())) for c in chunks])  # (C, 480000)
    mel = whisper_log_mel_batch(windows)  # (C, 80, 3000)
    fbank = [beats_fbank(c, fp16_waveform) for c in chunks]  # C x (F_c, 128)
    return AudioFeatures(mel=mel, fbank=fbank, slots=slots)
