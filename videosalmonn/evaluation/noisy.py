"""`videosalmonn eval add-noise`: a task's audio with Gaussian noise at a given SNR, as `<id>.wav` files (paper
App. F: LRS2 + 0 dB Gaussian noise), for a run to use through the reader's `noisy_audio` option.

    videosalmonn eval add-noise --task lrs2 --media-root LRS2/ --snr 0 --out LRS2-0dB/
    videosalmonn eval run --task lrs2 --media-root LRS2/ --option noisy_audio=LRS2-0dB/ --out runs/lrs2-0db

Each sample's clean audio (its audio file, else the video's own track) is decoded at 16 kHz mono, the noise is
seeded by (`seed`, sample id), so the files are the same on every machine, and written as 32-bit float WAV
(no clipping, no rounding: the measured SNR of the file is the target).
"""

from __future__ import annotations

import zlib
from pathlib import Path

from torch import Tensor

from videosalmonn.data.save import BenchmarkSample
from videosalmonn.errors import InputError
from videosalmonn.media.audio import load_audio
from videosalmonn.media.noise import add_noise
from videosalmonn.media.timeline import SAMPLE_RATE
from videosalmonn.media.writing import write_wav as write_media_wav


def sample_seed(seed: int, sample_id: str) -> int:
    """The noise seed of one sample: stable across runs, machines and sample order."""
    return seed * 2**32 + zlib.crc32(sample_id.encode("utf-8"))


def write_wav(path: Path, samples: Tensor) -> None:
    """(N,) float at SAMPLE_RATE -> a mono 32-bit float WAV."""
    write_media_wav(path, samples.float().numpy(), SAMPLE_RATE)


def write_noisy_audio(
    samples: list[BenchmarkSample], snr: float, seed: int, out: str | Path, channels: str = "downmix"
) -> list[Path]:
    """`out/<id>.wav` for every sample: its clean audio + Gaussian noise at `snr` dB. Returns the files."""
    out = Path(out)
    written = []
    for s in samples:
        source = s.audio or s.video
        if source is None:
            raise InputError(f"sample {s.id}: no audio or video to add noise to")
        clean = load_audio(source, channels).samples
        path = out / f"{s.id}.wav"
        write_wav(path, add_noise(clean, snr, sample_seed(seed, s.id)))
        written.append(path)
    return written
