"""Named rates of the video-SALMONN timeline, derived from each other (paper §3, spec §1-§3).

Everything is placed on one grid of 0.5-s *slots*: one video frame per slot (2 Hz), 25 audio encoder frames
per slot (Whisper and BEATs both run at 50 Hz), 32 InstructBLIP query tokens per frame.

    time  0.0 s          0.5 s          1.0 s
    slot  |----- 0 ------|----- 1 ------|  ...
    video   frame 0        frame 1                 (32 visual tokens each)
    audio   25 frames      25 frames               (+7 zero tokens -> 32 per slot)

Audio fills its own slots, ceil(duration / 0.5 s) (`audio_slots`); the official code instead counts every
started 30-s Whisper chunk as 60 full slots (zero-padded audio), which `media.limits: official` keeps.
"""

from __future__ import annotations

import math

SAMPLE_RATE = 16_000  # Hz, every audio stream is resampled to this
VIDEO_FPS = 2  # sampled video frames per second
SECONDS_PER_SLOT = 1 / VIDEO_FPS  # 0.5 s: one video frame per slot

# Whisper: 30-s windows, 10-ms log-mel hop, conv stride 2 -> 50 encoder frames per second.
WHISPER_CHUNK_SECONDS = 30
WHISPER_CHUNK_SAMPLES = WHISPER_CHUNK_SECONDS * SAMPLE_RATE  # 480,000
WHISPER_N_FFT = 400
WHISPER_HOP = 160
WHISPER_N_MELS = 80  # log-mel bins
WHISPER_MEL_FRAMES = WHISPER_CHUNK_SAMPLES // WHISPER_HOP  # 3,000 log-mel frames per chunk
WHISPER_FRAMES_PER_SECOND = 50  # encoder output rate
WHISPER_FRAMES_PER_CHUNK = WHISPER_CHUNK_SECONDS * WHISPER_FRAMES_PER_SECOND  # 1,500

AUDIO_FRAMES_PER_SLOT = int(WHISPER_FRAMES_PER_SECOND * SECONDS_PER_SLOT)  # 25
SLOTS_PER_CHUNK = WHISPER_FRAMES_PER_CHUNK // AUDIO_FRAMES_PER_SLOT  # 60 slots = 30 s
SAMPLES_PER_SLOT = WHISPER_CHUNK_SAMPLES // SLOTS_PER_CHUNK  # 8,000 samples = 0.5 s

# BEATs: Kaldi fbank (25 ms frames, 10 ms shift), 16x16 patches -> 8 frequency x T/16 time patches.
BEATS_FRAME_LENGTH = 400  # samples (25 ms)
BEATS_FRAME_SHIFT = 160  # samples (10 ms)
BEATS_N_MELS = 128
BEATS_PATCH = 16
BEATS_FBANK_MEAN = 15.41663
BEATS_FBANK_STD = 6.55582

# Official input limits (spec §1.1, §1.5): audio after 30 s and video after 60 s are dropped.
OFFICIAL_MAX_AUDIO_SECONDS = WHISPER_CHUNK_SECONDS
OFFICIAL_MAX_VIDEO_SECONDS = 60
OFFICIAL_MIN_AUDIO_SECONDS = 3  # shorter audio is zero-padded to 3 s before BEATs (spec §1.5)

# Frame transform (CLIP statistics, spec §1.3).
IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)


def seconds_to_slots(seconds: float) -> int:
    """Number of 0.5-s slots needed to cover `seconds` (at least one)."""
    return max(1, math.ceil(seconds * VIDEO_FPS - 1e-9))


def audio_slots(samples: int, chunk_padding: bool) -> int:
    """0.5-s slots of `samples` audio samples (0: no audio): the audio's own, ceil(samples / 8000), or with
    `chunk_padding` (official) 60 for every started 30-s chunk."""
    if samples <= 0:
        return 0
    if chunk_padding:
        return math.ceil(samples / WHISPER_CHUNK_SAMPLES) * SLOTS_PER_CHUNK
    return math.ceil(samples / SAMPLES_PER_SLOT)
