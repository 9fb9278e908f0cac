"""Audio features (videosalmonn.media.features) against the official golden tensors, and the chunking rules."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import GOLDEN, needs_golden

from videosalmonn.media.audio import load_audio
from videosalmonn.media.features import (
    audio_features,
    beats_fbank,
    kaldi_fbank,
    split_chunks,
    whisper_log_mel,
    whisper_log_mel_batch,
    whisper_mel_filters,
)
from videosalmonn.media.timeline import (
    BEATS_FBANK_MEAN,
    BEATS_FBANK_STD,
    SAMPLE_RATE,
    WHISPER_CHUNK_SAMPLES,
    audio_slots,
)
from videosalmonn.official.tolerance import POWER_TOLERANCE, TOLERANCE, beats_fbank_error

CASES = {"av": "4405327307.wav", "audioimage": "1272-128104-0000.flac"}
MIN_SAMPLES = 3 * SAMPLE_RATE


def official_input(case: str) -> torch.Tensor:
    """What the official dataset feeds both encoders: channel 0, <= 30 s, zero-padded to >= 3 s."""
    samples = load_audio(GOLDEN / "media" / CASES[case], channels="first").samples[:WHISPER_CHUNK_SAMPLES]
    return F.pad(samples, (0, max(0, MIN_SAMPLES - samples.numel())))


def fbank_frames(n_samples: int) -> int:
    return 1 + (n_samples - 400) // 160


def test_mel_filters_equal_whisper_feature_extractor():
    from transformers import WhisperFeatureExtractor

    reference = WhisperFeatureExtractor(feature_size=80).mel_filters  # what the official preprocessing uses
    ours = whisper_mel_filters()
    assert ours.shape == (201, 80)
    assert torch.allclose(ours, torch.from_numpy(reference), rtol=1e-12, atol=1e-15)
    assert torch.equal(ours.float(), torch.from_numpy(reference).float())


@needs_golden
@pytest.mark.parametrize("case", list(CASES))
def test_whisper_log_mel_matches_golden(case, golden_tensors):
    mel = whisper_log_mel(official_input(case))
    golden = golden_tensors(case)["whisper_logmel"]
    assert mel.shape == golden.shape == (80, 3000)
    assert (mel - golden).abs().max().item() <= TOLERANCE


@needs_golden
@pytest.mark.parametrize("case", list(CASES))
def test_beats_fbank_matches_golden(case, golden_tensors):
    fbank = beats_fbank(official_input(case))
    golden = golden_tensors(case)["beats_fbank"][0]
    assert fbank.shape == golden.shape
    assert beats_fbank_error(fbank, golden) <= POWER_TOLERANCE


@needs_golden
@pytest.mark.parametrize("case", list(CASES))
def test_audio_features_single_window_is_official(case, golden_tensors):
    samples = load_audio(GOLDEN / "media" / CASES[case], channels="first").samples
    feats = audio_features(samples, chunk_padding=True)
    golden = golden_tensors(case)
    assert feats.mel.shape == (1, 80, 3000) and len(feats.fbank) == 1
    assert (feats.mel[0] - golden["whisper_logmel"]).abs().max().item() <= TOLERANCE
    assert beats_fbank_error(feats.fbank[0], golden["beats_fbank"][0]) <= POWER_TOLERANCE


@needs_golden
def test_fbank_yardstick_rejects_real_errors(golden_tensors):
    """The power-domain tolerance still fails a wrong pre-emphasis, window or input by orders of magnitude."""
    golden = golden_tensors("av")["beats_fbank"][0]
    samples = official_input("av") * 2**15
    wrong = [kaldi_fbank(samples, preemphasis=0.9), kaldi_fbank(samples * 1.01), kaldi_fbank(samples, low_freq=30)]
    for fbank in wrong:
        normalised = (fbank - BEATS_FBANK_MEAN) / (2 * BEATS_FBANK_STD)
        assert beats_fbank_error(normalised, golden) > 100 * POWER_TOLERANCE


def test_chunking_long_audio():
    samples = torch.randn(65 * SAMPLE_RATE) * 0.1
    feats = audio_features(samples, chunk_padding=False)
    assert feats.mel.shape == (3, 80, 3000)
    assert [f.shape for f in feats.fbank] == [(fbank_frames(WHISPER_CHUNK_SAMPLES), 128)] * 2 + [
        (fbank_frames(5 * SAMPLE_RATE), 128)
    ]
    last = samples[2 * WHISPER_CHUNK_SAMPLES :]
    assert torch.equal(feats.mel[2], whisper_log_mel(last))
    assert torch.equal(feats.fbank[2], beats_fbank(last))
    assert torch.equal(feats.mel[0], whisper_log_mel(samples[:WHISPER_CHUNK_SAMPLES]))


def test_chunks_shorter_than_3s_are_padded():
    samples = torch.randn(WHISPER_CHUNK_SAMPLES + SAMPLE_RATE) * 0.1  # 31 s: last chunk 1 s
    chunks = split_chunks(samples)
    assert [c.numel() for c in chunks] == [WHISPER_CHUNK_SAMPLES, MIN_SAMPLES]
    assert torch.equal(chunks[1][:SAMPLE_RATE], samples[WHISPER_CHUNK_SAMPLES:])
    assert not chunks[1][SAMPLE_RATE:].any()
    assert audio_features(samples, chunk_padding=False).fbank[1].shape == (fbank_frames(MIN_SAMPLES), 128)


def test_short_and_exact_lengths():
    tiny = audio_features(torch.randn(SAMPLE_RATE // 10) * 0.1, chunk_padding=False)  # 0.1 s
    assert tiny.mel.shape == (1, 80, 3000) and tiny.fbank[0].shape == (fbank_frames(MIN_SAMPLES), 128)
    exact = audio_features(torch.randn(WHISPER_CHUNK_SAMPLES) * 0.1, chunk_padding=False)  # exactly 30 s: one chunk
    assert exact.mel.shape[0] == 1 and exact.fbank[0].shape[0] == fbank_frames(WHISPER_CHUNK_SAMPLES)
    with pytest.raises(ValueError):
        audio_features(torch.zeros(0), chunk_padding=False)


@pytest.mark.parametrize(
    "seconds, chunks, own, official",
    [
        (0.1, 1, 1, 60),  # at least one slot
        (5, 1, 10, 60),  # a 5-s clip: 10 slots of its own, 30 s of slots with the official chunk padding
        (5.2, 1, 11, 60),  # a started slot counts
        (30, 1, 60, 60),  # exactly one chunk
        (31, 2, 62, 120),  # a second chunk of 1 s
        (65, 3, 130, 180),
    ],
)
def test_audio_slots(seconds, chunks, own, official):
    samples = torch.randn(round(seconds * SAMPLE_RATE)) * 0.1
    default, padded = (audio_features(samples, chunk_padding=p) for p in (False, True))
    assert default.mel.shape[0] == padded.mel.shape[0] == chunks
    assert (default.slots, padded.slots) == (own, official)
    assert torch.equal(default.mel, padded.mel)  # the encoder inputs are the same; only the slots differ
    assert audio_slots(samples.numel(), chunk_padding=False) == own and audio_slots(0, chunk_padding=True) == 0


def test_batched_log_mel_normalises_each_chunk():
    a, b = torch.randn(WHISPER_CHUNK_SAMPLES) * 0.5, torch.randn(WHISPER_CHUNK_SAMPLES) * 1e-3
    batch = whisper_log_mel_batch(torch.stack([a, b]))
    assert torch.equal(batch[0], whisper_log_mel(a)) and torch.equal(batch[1], whisper_log_mel(b))
    with pytest.raises(ValueError):
        whisper_log_mel(torch.zeros(WHISPER_CHUNK_SAMPLES + 1))


def test_fp16_waveform_round_trip():
    samples = torch.randn(MIN_SAMPLES) * 0.1
    assert torch.equal(beats_fbank(samples, fp16_waveform=True), beats_fbank(samples.half().float()))
    assert not torch.equal(beats_fbank(samples, fp16_waveform=True), beats_fbank(samples))
    feats = audio_features(samples, fp16_waveform=True, chunk_padding=False)
    assert torch.equal(feats.fbank[0], beats_fbank(samples, True))


def test_kaldi_fbank_against_float64():
    """Our float32 fbank stays within float32 noise of the same computation in float64."""
    wave = torch.randn(16000, dtype=torch.float64) * 3000
    ours = kaldi_fbank(wave.float())
    frames = wave.unfold(0, 400, 160)  # (F, 400)
    frames = frames - frames.mean(1, keepdim=True)
    frames = frames - 0.97 * torch.cat([frames[:, :1], frames[:, :-1]], 1)
    window = torch.hann_window(400, periodic=False, dtype=torch.float64) ** 0.85
    power = torch.fft.rfft(F.pad(frames * window, (0, 112))).abs() ** 2
    from videosalmonn.media.features import kaldi_mel_banks

    eps = torch.finfo(torch.float32).eps  # floor of empty mel bins
    reference = (power @ kaldi_mel_banks(128, 512, 16000, 20.0).double().T).clamp(min=eps).log()
    assert ours.shape == (fbank_frames(16000), 128)
    assert (ours.double() - reference).abs().max().item() < 1e-3
