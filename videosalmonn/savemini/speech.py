"""Utterance -> speech samples with espeak-ng (Debian package `espeak-ng`), 16 kHz float32.

    synthesize(utt)  espeak-ng -v <voice> -s <rate> -p <pitch> --stdout -- <text>, 22,050 Hz -> 16 kHz (FFmpeg's
                     resampler through PyAV), leading and trailing silence trimmed to MARGIN seconds
    voices()         the English voice+variant names that espeak-ng can speak here, each sounding different

The text goes to espeak-ng as one argument (no shell), after `--`, so nothing in it is read as an option; SSML
is off (no -m), so the spoken words are exactly the text. A run costs about 15 ms per sentence, most of it
speaking, so there is nothing to gain from batching sentences into one process.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
import subprocess
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from functools import lru_cache

import av
import numpy as np

from videosalmonn.errors import InputError
from videosalmonn.savemini.scene import SAMPLE_RATE, Utterance

ESPEAK = "espeak-ng"
TIMEOUT = 30.0  # s: one sentence takes tens of milliseconds
MARGIN = 0.05  # s: silence kept before the first and after the last sound
SILENCE = 0.01  # a sample quieter than this fraction of the peak is silence (-40 dB)
RATES = (80, 450)  # words per minute espeak-ng accepts
PITCHES = (0, 99)
# Whispered variants have no voicing: under background noise they are not speech a listener can follow.
UNVOICED_VARIANTS = frozenset({"whisper", "whisperf"})
_PROBE = "the quick brown fox jumps over the lazy dog"  # tells variants that sound the same apart


def synthesize(utt: Utterance) -> np.ndarray:
    """(n,) float32 at SAMPLE_RATE: `utt.text` spoken by `utt.voice` (read-only; the same samples every time)."""
    base, _, variant = utt.voice.partition("+")
    bases, variants = _voice_tables()
    if base not in bases or (variant and variant not in variants):
        raise InputError(f"{utt.voice!r} is not an English espeak-ng voice here (see savemini.speech.voices())")
    if not RATES[0] <= utt.rate <= RATES[1] or not PITCHES[0] <= utt.pitch <= PITCHES[1]:
        raise InputError(f"utterance {utt.text!r}: rate {utt.rate} must be in {RATES}, pitch {utt.pitch} in {PITCHES}")
    if not utt.text.strip():
        raise InputError("utterance with no text")
    return _speak(utt.text, utt.voice, utt.rate, utt.pitch)


@lru_cache(maxsize=1)
def voices() -> tuple[str, ...]:
    """Sorted "voice" and "voice+variant" names: every English espeak-ng voice (mbrola `mb-*` voices excluded:
    they need the mbrola package), alone and with every variant that is voiced and sounds unlike the others
    (variants whose probe sentence comes out byte-identical are one voice; the first name is kept)."""
    bases, variants = _voice_tables()
    names = [""] + sorted(variants)
    probe = lambda name: hashlib.sha1(_espeak_wav(_PROBE, f"en-us+{name}" if name else "en-us", 175, 50)).digest()  # noqa: E731
    with ThreadPoolExecutor(4) as pool:  # ~100 short espeak-ng runs, each mostly process start-up
        digests = list(pool.map(probe, names))
    seen: set[bytes] = set()
    distinct = []
    for name, digest in zip(names, digests):
        if digest not in seen:
            seen.add(digest)
            distinct.append(name)
    return tuple(sorted(f"{b}+{v}" if v else b for b in bases for v in distinct))


@lru_cache(maxsize=1)
def _voice_tables() -> tuple[frozenset[str], frozenset[str]]:
    """(English gmw voices, voiced variant names) that this espeak-ng lists (it falls back silently on others)."""
    bases = _voice_table("en", lambda file: file.startswith("gmw/"))
    variants = _voice_table("variant", lambda file: file.startswith("!v/"))
    return frozenset(bases), frozenset(variants) - UNVOICED_VARIANTS


# ------------------------------------------------------------------------------------------------ espeak


@lru_cache(maxsize=64)
def _speak(text: str, voice: str, rate: int, pitch: int) -> np.ndarray:
    rate_hz, pcm = _parse_wav(_espeak_wav(text, voice, rate, pitch))
    samples = _trim(_resample(pcm, rate_hz))
    samples.flags.writeable = False
    return samples


def _espeak_exe() -> str:
    exe = shutil.which(ESPEAK)
    if exe is None:
        raise InputError("espeak-ng not found: apt-get install espeak-ng")
    return exe


def _espeak_wav(text: str, voice: str, rate: int, pitch: int) -> bytes:
    cmd = [_espeak_exe(), "-v", voice, "-s", str(rate), "-p", str(pitch), "--stdout", "--", text]
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise InputError(f"espeak-ng took over {TIMEOUT:.0f} s to say {text[:60]!r}") from None
    if done.returncode != 0 or len(done.stdout) <= 44:
        why = done.stderr.decode(errors="replace").strip().splitlines()
        raise InputError(f"espeak-ng failed on {text[:60]!r} with voice {voice}: {why[0] if why else 'no audio'}")
    return done.stdout


def _voice_table(selector: str, keep) -> list[str]:
    """The file names (after the directory) in `espeak-ng --voices=<selector>` whose File column passes `keep`;
    voices lower-cased ("gmw/en-US" -> "en-us"). Not the Language column: espeak-ng 1.51 ignores a +variant on
    the language "en-gb" (its file is "gmw/en"), but not on "en"."""
    done = subprocess.run([_espeak_exe(), f"--voices={selector}"], capture_output=True, timeout=TIMEOUT, check=True)
    names = []
    for line in done.stdout.decode().splitlines()[1:]:
        cols = line.split()
        if len(cols) > 4 and keep(cols[4]):  # Pty Language Age/Gender VoiceName File [Other Languages]
            name = cols[4].split("/", 1)[1]
            names.append(name if selector == "variant" else name.lower())
    return sorted(set(names))


def _parse_wav(data: bytes) -> tuple[int, np.ndarray]:
    """(rate, (n,) int16) from espeak-ng's streamed WAV (its data size field is a placeholder: read to the end)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise InputError("espeak-ng did not write a WAV file")
    pos, rate = 12, None
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if chunk == b"fmt ":
            fmt, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", data, pos + 8)
            if (fmt, channels, bits) != (1, 1, 16):
                raise InputError(f"espeak-ng wrote WAV format {fmt}, {channels} channels, {bits} bits, not PCM16 mono")
        elif chunk == b"data":
            if rate is None:
                raise InputError("espeak-ng's WAV has no fmt chunk before its data")
            body = data[pos + 8 :]
            return rate, np.frombuffer(body[: len(body) // 2 * 2], "<i2")
        pos += 8 + size + (size & 1)
    raise InputError("espeak-ng's WAV has no data chunk")


def _resample(pcm: np.ndarray, rate: int) -> np.ndarray:
    """(n,) int16 at `rate` -> (m,) float32 at SAMPLE_RATE, FFmpeg's resampler flushed."""
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[None]), format="s16", layout="mono")
    frame.sample_rate = rate
    frame.pts = 0
    frame.time_base = Fraction(1, rate)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    pieces = [f.to_ndarray()[0] for f in resampler.resample(frame)]
    pieces += [f.to_ndarray()[0] for f in resampler.resample(None)]
    return np.concatenate(pieces).astype(np.float32, copy=False) if pieces else np.zeros(0, np.float32)


def _trim(samples: np.ndarray) -> np.ndarray:
    """Keep from MARGIN before the first to MARGIN after the last sample louder than SILENCE * peak (zeros pad)."""
    loud = np.flatnonzero(np.abs(samples) > SILENCE * np.abs(samples).max()) if samples.size else []
    if len(loud) == 0:
        raise InputError("espeak-ng produced only silence")
    m = round(MARGIN * SAMPLE_RATE)
    out = np.zeros(loud[-1] - loud[0] + 1 + 2 * m, np.float32)
    out[m : m + loud[-1] - loud[0] + 1] = samples[loud[0] : loud[-1] + 1]
    return out
