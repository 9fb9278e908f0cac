"""Scene -> samples: the sound events, background noise, and the clip's whole sound track (16 kHz float32).

    render_sounds(scene, n)  every SoundEvent at its onset, peak amplitude `level`, nothing else
    background_noise(kind, n, rng)  white / pink / brown noise of unit RMS
    mix_at_snr(signal, noise, snr_db)  signal + noise scaled to snr_db below the signal's active RMS (active_rms)
    audio_track(scene, speech_audio)  speech at its onsets + sounds + background noise, safe in [-1, 1]

Every event is built from its own parameters only (its noise from a generator seeded by the scene seed and the
event's index), so rendering is deterministic and one event never changes another. Notes have short raised-
cosine attack and release ramps (no clicks at the edges); each note of a melody has its own, so the notes are
heard one by one. Clicks are 6 ms decaying 2.5 kHz bursts, the first at the event onset, `duration / count` apart.
"""

from __future__ import annotations

import math

import numpy as np

from videosalmonn.savemini.scene import SAMPLE_RATE, Scene, SoundEvent, Utterance
from videosalmonn.savemini.speech import synthesize

ATTACK = 0.010  # s: a note's rise
RELEASE = 0.030  # s: a note's fall (inside its duration)
MAX_HARMONICS = 12  # square / sawtooth / triangle: partials below Nyquist, at most this many
CLICK_SECONDS = 0.006
CLICK_HZ = 2500.0
MIN_CLICK_SPACING = 0.1  # s: clicks closer than this are refused (they could not be counted)
ACTIVE_DB = 40.0  # mix_at_snr: a 20-ms frame is active when within this many dB of the loudest frame
ACTIVE_FRAME = 320  # samples: 20 ms
SPEECH_PEAK = 0.7  # audio_track: each utterance is scaled to this peak
TRACK_PEAK = 0.95  # audio_track: a louder mix is scaled down to this peak (a quieter one is left alone)

# Inharmonic partials of a bell (ratio to the fundamental, amplitude, decay per second).
_BELL = ((1.0, 1.0, 2.0), (2.76, 0.6, 3.5), (5.40, 0.4, 5.0), (8.93, 0.25, 7.0))
_ORGAN = ((1, 1.0), (2, 0.5), (3, 0.35), (4, 0.25), (6, 0.15), (8, 0.1))


# ------------------------------------------------------------------------------------------ public API


def render_sounds(scene: Scene, n_samples: int) -> np.ndarray:
    """(n_samples,) float32: every sound event of `scene` at its onset (past n_samples: cut)."""
    out = np.zeros(n_samples, np.float64)
    for index, event in enumerate(scene.sounds):
        wave = render_event(event, np.random.default_rng([scene.seed, 1, index]))
        start = round(event.onset * SAMPLE_RATE)
        if start >= n_samples:
            continue
        piece = wave[: n_samples - start]
        out[start : start + piece.size] += piece
    return out.astype(np.float32)


def render_event(event: SoundEvent, rng: np.random.Generator) -> np.ndarray:
    """(round(duration * SAMPLE_RATE),) float64 of one event, its peak = event.level (rng: noise bursts only)."""
    n = round(event.duration * SAMPLE_RATE)
    if n <= 0:
        raise ValueError(f"sound event with duration {event.duration} s")
    if event.kind == "tone":
        wave = _note(event.timbre, _need_notes(event, 1)[0], n)
    elif event.kind == "chord":
        wave = sum(_note(event.timbre, m, n) for m in _need_notes(event, 1))
    elif event.kind == "melody":
        wave = _melody(event.timbre, _need_notes(event, 1), n)
    elif event.kind == "clicks":
        wave = _clicks(event.count, n)
    elif event.kind == "noise":
        wave = background_noise(event.noise, n, rng) * _envelope(n)
    else:
        raise ValueError(f"unknown sound kind {event.kind!r}")
    peak = np.abs(wave).max()
    return wave * (event.level / peak) if peak > 0 else wave


def background_noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) float64 noise of unit RMS: white (flat), pink (power 1/f) or brown (power 1/f^2), no DC."""
    if kind == "white":
        noise = rng.standard_normal(n)
    elif kind in ("pink", "brown"):
        m = 1 << max(0, n - 1).bit_length()  # shaped at a power-of-two length (an FFT of a prime length is slow)
        spectrum = np.fft.rfft(rng.standard_normal(m))
        f = np.arange(spectrum.size, dtype=np.float64)
        f[0] = 1.0
        spectrum /= f ** (0.5 if kind == "pink" else 1.0)
        spectrum[0] = 0.0
        noise = np.fft.irfft(spectrum, m)[:n]
    else:
        raise ValueError(f"unknown noise kind {kind!r}")
    rms = math.sqrt(float(np.mean(noise**2)))
    return noise / rms if rms > 0 else noise


def active_rms(signal: np.ndarray) -> float:
    """RMS over the 20-ms frames within ACTIVE_DB of the loudest frame (pauses and silence excluded)."""
    n = signal.size // ACTIVE_FRAME * ACTIVE_FRAME
    if n == 0:
        return math.sqrt(float(np.mean(np.square(signal, dtype=np.float64)))) if signal.size else 0.0
    power = np.square(signal[:n].astype(np.float64)).reshape(-1, ACTIVE_FRAME).mean(axis=1)  # (frames,)
    if power.max() <= 0:
        return 0.0
    active = power >= power.max() * 10 ** (-ACTIVE_DB / 10)
    return math.sqrt(float(power[active].mean()))


def noise_at_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """`noise` (float64) scaled so that active_rms(signal) / rms(noise) is snr_db."""
    if signal.shape != noise.shape:
        raise ValueError(f"signal {signal.shape} and noise {noise.shape} differ in length")
    level = active_rms(signal)
    if level == 0:
        raise ValueError("the signal is silent: an SNR relative to it means nothing")
    noise_rms = math.sqrt(float(np.mean(np.square(noise, dtype=np.float64))))
    return noise * (level / 10 ** (snr_db / 20) / noise_rms)


def mix_at_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """signal + noise, the noise scaled so that active_rms(signal) / rms(noise) is snr_db (signal's dtype)."""
    return (signal.astype(np.float64) + noise_at_snr(signal, noise, snr_db)).astype(signal.dtype)


def audio_track(scene: Scene, speech_audio: dict[Utterance, np.ndarray] | None = None) -> np.ndarray:
    """(round(duration * SAMPLE_RATE),) float32 in [-1, 1]: the clip's whole sound track.

    Each utterance (from `speech_audio`, else synthesized now) is scaled to peak SPEECH_PEAK and placed at its
    onset; ValueError if one runs past the clip. Background noise is at `noise_snr_db` below the speech, or
    below the sounds when nothing is said. A mix louder than TRACK_PEAK is scaled down to it.
    """
    n = round(scene.duration * SAMPLE_RATE)
    if n <= 0:  # a still image has none, unless it has a spoken description (its duration is the speech's)
        raise ValueError(f"scene {scene.id} lasts {scene.duration} s: it has no sound track")
    speech = np.zeros(n, np.float64)
    for utt in scene.speech:
        samples = _speech_samples(utt, speech_audio)
        start = round(utt.onset * SAMPLE_RATE)
        if start < 0 or start + samples.size > n:
            raise ValueError(
                f"scene {scene.id}: utterance {utt.text!r} at {utt.onset:.2f} s lasts"
                f" {samples.size / SAMPLE_RATE:.2f} s, past the clip's {scene.duration:.2f} s"
            )
        peak = float(np.abs(samples).max()) if samples.size else 0.0
        if peak > 0:
            speech[start : start + samples.size] += samples * (SPEECH_PEAK / peak)
    sounds = render_sounds(scene, n).astype(np.float64)
    mix = speech + sounds
    if scene.noise_snr_db is not None:
        reference = speech if scene.speech else sounds
        noise = background_noise(scene.noise, n, np.random.default_rng([scene.seed, 2]))
        mix += noise_at_snr(reference, noise, scene.noise_snr_db)
    peak = float(np.abs(mix).max()) if n else 0.0
    if peak > TRACK_PEAK:
        mix *= TRACK_PEAK / peak
    return mix.astype(np.float32)


# ------------------------------------------------------------------------------------------- pieces


def midi_hz(note: int) -> float:
    """MIDI note number -> Hz (69 = A4 = 440 Hz)."""
    return 440.0 * 2.0 ** ((note - 69) / 12)


def _need_notes(event: SoundEvent, least: int) -> tuple[int, ...]:
    if len(event.notes) < least:
        raise ValueError(f"a {event.kind} needs at least {least} note(s), got {event.notes}")
    return event.notes


def _envelope(n: int, attack: float = ATTACK, release: float = RELEASE) -> np.ndarray:
    """(n,) raised-cosine rise and fall; both ramps shrink to fit a short note."""
    a = min(round(attack * SAMPLE_RATE), n // 2)
    r = min(round(release * SAMPLE_RATE), n - a)
    env = np.ones(n)
    if a:
        env[:a] = 0.5 - 0.5 * np.cos(np.pi * (np.arange(a) + 0.5) / a)
    if r:
        env[n - r :] = 0.5 + 0.5 * np.cos(np.pi * (np.arange(r) + 0.5) / r)
    return env


def _note(timbre: str, midi: int, n: int) -> np.ndarray:
    """(n,) one note of `timbre`, with its envelope, peak not normalised."""
    f0 = midi_hz(midi)
    t = np.arange(n) / SAMPLE_RATE
    nyquist = SAMPLE_RATE / 2
    if timbre == "sine":
        wave = np.sin(2 * np.pi * f0 * t)
    elif timbre in ("square", "sawtooth", "triangle"):
        ks = [k for k in range(1, 4 * MAX_HARMONICS) if k * f0 < 0.9 * nyquist]
        if timbre != "sawtooth":
            ks = [k for k in ks if k % 2 == 1]
        wave = np.zeros(n)
        for k in ks[:MAX_HARMONICS]:
            if timbre == "triangle":
                amp = (-1) ** ((k - 1) // 2) / k**2
            else:
                amp = 1.0 / k
            wave += amp * np.sin(2 * np.pi * k * f0 * t)
    elif timbre == "organ":
        wave = sum(a * np.sin(2 * np.pi * k * f0 * t) for k, a in _ORGAN if k * f0 < 0.9 * nyquist)
    elif timbre == "bell":
        wave = sum(a * np.exp(-d * t) * np.sin(2 * np.pi * r * f0 * t) for r, a, d in _BELL if r * f0 < 0.9 * nyquist)
        return wave * _envelope(n, attack=0.002)
    elif timbre == "pluck":
        wave = sum(
            np.exp(-(3.0 + 1.5 * k) * t) * np.sin(2 * np.pi * k * f0 * t) / k
            for k in range(1, 9)
            if k * f0 < 0.9 * nyquist
        )
        return wave * _envelope(n, attack=0.002)
    else:
        raise ValueError(f"unknown timbre {timbre!r}")
    return wave * _envelope(n)


def _melody(timbre: str, notes: tuple[int, ...], n: int) -> np.ndarray:
    """The notes one after another, equal lengths (the last takes the remainder), each with its own envelope."""
    bounds = [round(i * n / len(notes)) for i in range(len(notes) + 1)]
    return np.concatenate([_note(timbre, m, b - a) for m, a, b in zip(notes, bounds[:-1], bounds[1:])])


def _clicks(count: int, n: int) -> np.ndarray:
    """`count` clicks, the first at sample 0, n / count apart."""
    if count < 1:
        raise ValueError(f"clicks need count >= 1, got {count}")
    spacing = n / count
    if spacing < MIN_CLICK_SPACING * SAMPLE_RATE:
        raise ValueError(f"{count} clicks in {n / SAMPLE_RATE:.2f} s are closer than {MIN_CLICK_SPACING} s")
    m = round(CLICK_SECONDS * SAMPLE_RATE)
    t = np.arange(m) / SAMPLE_RATE
    click = np.sin(2 * np.pi * CLICK_HZ * t) * np.exp(-t / (CLICK_SECONDS / 4)) * _envelope(m, 0.0005, 0.001)
    out = np.zeros(n)
    for i in range(count):
        start = round(i * spacing)
        piece = click[: n - start]
        out[start : start + piece.size] += piece
    return out


def _speech_samples(utt: Utterance, speech_audio: dict[Utterance, np.ndarray] | None) -> np.ndarray:
    if speech_audio is not None and utt in speech_audio:
        return np.asarray(speech_audio[utt], np.float64)
    return synthesize(utt).astype(np.float64)
