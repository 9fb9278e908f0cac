"""SAVE-mini renderers and writers: the pixels and samples say what the Scene says, rendered and after a round trip
through the files (decoded with our own readers).

Every expected value comes from the Scene's parameters and the documented conventions (scene.py), recomputed
here: centres and radii by linear interpolation, note frequencies from MIDI numbers, SNRs from the samples.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import replace

import numpy as np
import pytest

from videosalmonn.errors import InputError
from videosalmonn.media.audio import load_audio
from videosalmonn.media.image import load_image
from videosalmonn.media.video import probe_video, sample_frames
from videosalmonn.savemini import frames as F
from videosalmonn.savemini import sound as S
from videosalmonn.savemini.scene import (
    BACKGROUNDS,
    COLOURS,
    FLASH_COLOUR,
    FLASH_SECONDS,
    FPS,
    FRAME_SIZE,
    SAMPLE_RATE,
    SHAPES,
    SIZES,
    TIMBRES,
    OnScreenText,
    Scene,
    SoundEvent,
    Utterance,
    VisualObject,
)
from videosalmonn.savemini.writer import write_audio, write_image, write_video

needs_font = pytest.mark.skipif(
    not F.FONT_PATH.is_file(), reason=f"{F.FONT_PATH} missing (apt-get install fonts-dejavu-core)"
)
needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng missing (apt-get install espeak-ng)"
)
H264_TOL = 24  # per channel, inside a flat region of an object after H.264 + yuv420p

# ------------------------------------------------------------------------------------------ truth


def centre_px(o: VisualObject, t: float) -> tuple[float, float]:
    u = (t - o.appear) / (o.disappear - o.appear)
    return tuple((a + u * (b - a)) * FRAME_SIZE for a, b in zip(o.start, o.end))


def radius_px(o: VisualObject, t: float) -> float:
    u = (t - o.appear) / (o.disappear - o.appear)
    return SIZES[o.size] * (1 + u * (o.grow - 1)) * FRAME_SIZE


def expected_rgb(o: VisualObject, t: float) -> tuple[int, int, int]:
    return FLASH_COLOUR if any(f <= t < f + FLASH_SECONDS for f in o.flashes) else COLOURS[o.colour]


def solid_point(o: VisualObject, t: float) -> tuple[int, int]:
    """A pixel inside the shape: the centre, or the middle of a ring's band."""
    x, y = centre_px(o, t)
    if o.shape == "ring":
        x += (1 - F.RING_WIDTH / 2) * radius_px(o, t)
    return round(x), round(y)


def near(pixel, rgb, tol: int) -> bool:
    return bool(np.all(np.abs(np.asarray(pixel, int) - np.asarray(rgb, int)) <= tol))


def av_scene() -> Scene:
    objects = (
        VisualObject("o0", "circle", "red", "medium", 0.3, 4.2, (0.2, 0.35), (0.2, 0.62), flashes=(1.2,)),
        VisualObject("o1", "square", "blue", "small", 1.8, 5.7, (0.86, 0.2), (0.8, 0.35), grow=1.5),
        VisualObject("o2", "star", "green", "large", 0.0, 6.0, (0.68, 0.8), (0.68, 0.8), flashes=(3.7,)),
        VisualObject("o3", "ring", "yellow", "medium", 2.3, 5.2, (0.45, 0.18), (0.45, 0.18)),
    )
    texts = (OnScreenText("417", "cyan", 0.9, 3.6, (0.3, 0.88), 0.1),)
    sounds = (
        SoundEvent("tone", 0.4, 0.8, "sine", (69,), level=0.5),
        SoundEvent("chord", 1.6, 1.0, "organ", (60, 64, 67), level=0.4),
        SoundEvent("melody", 3.0, 1.2, "bell", (72, 76, 79), level=0.5),
        SoundEvent("noise", 4.4, 0.5, noise="pink", level=0.4),
        SoundEvent("clicks", 5.1, 0.8, count=4, level=0.6, source="o2"),
    )
    scene = Scene("t0", "video", 6.0, "navy", objects, texts, sounds, seed=7)
    for i in range(60):  # the test scene itself: objects apart, as the world keeps them (corners: sqrt 2 r)
        on = [o for o in objects if o.appear <= i / FPS < o.disappear]
        for a in on:
            for b in on[on.index(a) + 1 :]:
                gap = math.dist(centre_px(a, i / FPS), centre_px(b, i / FPS))
                assert gap > 1.45 * (radius_px(a, i / FPS) + radius_px(b, i / FPS)) + 2, (a.id, b.id, i)
    return scene


def check_objects(scene: Scene, frame: np.ndarray, t: float, tol: int, edge: float = 0.08) -> None:
    """Every object: its colour (or white while flashing) inside it when on screen, the background when not;
    a circle or square reaches (1 - edge) of its radius left, right, up and down, and not (1 + edge)."""
    bg = BACKGROUNDS[scene.background]
    for o in scene.objects:
        if o.appear <= t < o.disappear:
            x, y = solid_point(o, t)
            rgb = expected_rgb(o, t)
            assert near(frame[y, x], rgb, tol), (o.id, t, frame[y, x])
            if o.shape in ("circle", "square"):
                (cx, cy), r = centre_px(o, t), radius_px(o, t)
                for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                    at = lambda k: frame[round(cy + k * dy * r), round(cx + k * dx * r)]  # noqa: E731, B023
                    assert near(at(1 - edge), rgb, tol) and not near(at(1 + edge), rgb, tol), (o.id, t, dx, dy)
        else:
            for where in (o.start, o.end):
                x, y = (round(c * FRAME_SIZE) for c in where)
                assert near(frame[y, x], bg, tol), (o.id, t, "should be absent", frame[y, x])


# ---------------------------------------------------------------------------------------------- frames


def test_frame_count_and_times():
    assert F.render_frames(Scene("a", "video", 2.0)).shape == (20, FRAME_SIZE, FRAME_SIZE, 3)
    assert len(F.render_frames(Scene("a", "video", 0.7))) == 7  # 0.7 * 10 is 7.000000000000001
    assert len(F.render_frames(Scene("a", "video", 2.05))) == 21
    assert F.render_frames(Scene("a", "image", 0.0)).shape == (1, FRAME_SIZE, FRAME_SIZE, 3)
    blank = F.render_frame(Scene("a", "video", 1.0, "brown"), 0.5)
    assert blank.dtype == np.uint8 and np.all(blank == BACKGROUNDS["brown"])


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_has_its_colour_and_its_size(shape):
    o = VisualObject("o", shape, "orange", "large", 0.0, 1.0, (0.5, 0.5), (0.5, 0.5))
    frame = F.render_frame(Scene("s", "image", 0.0, "grey", (o,)), 0.0)
    x, y = solid_point(o, 0.0)
    r = radius_px(o, 0.0)
    assert tuple(frame[y, x]) == COLOURS["orange"]  # drawn without anti-aliasing: exact
    assert tuple(frame[round(FRAME_SIZE / 2 - 0.85 * r), FRAME_SIZE // 2]) == COLOURS["orange"]  # reaches up to r
    for dx, dy in ((1.1, 0), (-1.1, 0), (0, 1.1), (0, -1.1)):  # and no further
        assert tuple(frame[round(112 + dy * r), round(112 + dx * r)]) == BACKGROUNDS["grey"]
    if shape == "ring":
        assert tuple(frame[112, 112]) == BACKGROUNDS["grey"]  # the hole


@needs_font
def test_objects_move_grow_flash_appear_and_disappear():
    scene = av_scene()
    frames = F.render_frames(scene)
    for i in range(len(frames)):
        check_objects(scene, frames[i], i / FPS, tol=0)
    o1 = scene.object("o1")  # grows 1.5x: a pixel at 1.2 of its first radius is in it only late
    for t, inside in ((1.8, False), (5.6, True)):
        x, y = centre_px(o1, t)
        pixel = frames[round(t * FPS)][round(y), round(x + 1.2 * radius_px(o1, 1.8))]
        assert near(pixel, COLOURS["blue"], 0) == inside
    flash = frames[round(1.5 * FPS)]  # o0 flashes over [1.2, 1.8)
    x, y = solid_point(scene.object("o0"), 1.5)
    assert tuple(flash[y, x]) == FLASH_COLOUR


@needs_font
def test_word_drawn_in_its_box_at_its_height():
    word = OnScreenText("417", "pink", 0.0, 1.0, (0.4, 0.6), 0.12)
    frame = F.render_frame(Scene("w", "image", 0.0, "black", texts=(word,)), 0.0).astype(int)
    x0, y0, x1, y1 = F.text_box(word)
    ink = np.all(np.abs(frame - COLOURS["pink"]) <= 8, axis=-1)  # (H, W) fully inked pixels
    assert ink[y0:y1, x0:x1].sum() > 0.2 * (x1 - x0) * (y1 - y0)
    outside = np.any(frame != BACKGROUNDS["black"], axis=-1)
    outside[y0:y1, x0:x1] = False
    assert not outside.any()
    ys, xs = np.nonzero(ink)
    assert abs((ys.max() - ys.min() + 1) - 0.12 * FRAME_SIZE) <= 2  # digits are as tall as a capital
    assert (
        abs((xs.max() + xs.min()) / 2 - 0.4 * FRAME_SIZE) <= 1.5
        and abs((ys.max() + ys.min()) / 2 - 0.6 * FRAME_SIZE) <= 1.5
    )
    later = F.render_frame(Scene("w", "video", 2.0, "black", texts=(word,)), 1.0)
    assert np.all(later == BACKGROUNDS["black"])  # gone at disappear


@needs_font
def test_rendering_is_deterministic():
    scene = av_scene()
    assert np.array_equal(F.render_frames(scene), F.render_frames(scene))
    assert np.array_equal(S.render_sounds(scene, 6 * SAMPLE_RATE), S.render_sounds(scene, 6 * SAMPLE_RATE))
    other = S.render_sounds(replace(scene, seed=8), 6 * SAMPLE_RATE)
    assert not np.array_equal(other, S.render_sounds(scene, 6 * SAMPLE_RATE))  # only the noise burst differs


# ----------------------------------------------------------------------------------------------- sound


def envelope(x: np.ndarray, window: float = 0.005) -> np.ndarray:
    """(n,) RMS over a centred `window`."""
    w = round(window * SAMPLE_RATE)
    power = np.convolve(np.asarray(x, np.float64) ** 2, np.ones(w) / w, mode="same")
    return np.sqrt(np.maximum(power, 0))


def detect_onsets(x: np.ndarray, threshold: float = 0.02, merge: float = 0.05) -> list[float]:
    """Seconds where the RMS envelope rises through `threshold`, rises closer than `merge` after a fall dropped."""
    above = envelope(x) > threshold
    rises = np.flatnonzero(above[1:] & ~above[:-1]) + 1
    falls = np.flatnonzero(~above[1:] & above[:-1]) + 1
    onsets: list[float] = []
    for r in rises:
        previous_fall = falls[falls < r]
        if onsets and len(previous_fall) and (r - previous_fall[-1]) / SAMPLE_RATE < merge:
            continue
        onsets.append(r / SAMPLE_RATE)
    if above[0]:
        onsets.insert(0, 0.0)
    return onsets


def check_sound_onsets(scene: Scene, audio: np.ndarray) -> None:
    """Each event: silence before it, its envelope at 30 % of its own maximum within 20 ms of its onset (and
    a click counter finds `count` clicks)."""
    found = detect_onsets(audio)
    env = envelope(audio)
    for event in scene.sounds:
        after = [t for t in found if t >= event.onset - 0.05]
        assert after and abs(after[0] - event.onset) <= 0.02, (event.kind, event.onset, after[:1])
        a, b = round((event.onset - 0.05) * SAMPLE_RATE), round((event.onset + event.duration) * SAMPLE_RATE)
        rise = a + np.argmax(env[a:b] >= 0.3 * env[a:b].max())
        assert abs(rise / SAMPLE_RATE - event.onset) <= 0.02, (event.kind, event.onset, rise / SAMPLE_RATE)
        if event.kind == "clicks":
            inside = [t for t in found if event.onset - 0.05 <= t < event.onset + event.duration]
            assert len(inside) == event.count, (inside, event.count)


def spectral_peaks(x: np.ndarray, k: int) -> list[float]:
    """The k strongest local maxima (Hz) of the magnitude spectrum, each the largest within +-5 Hz."""
    n = 4 * SAMPLE_RATE
    mag = np.abs(np.fft.rfft(x * np.hanning(x.size), n))
    hz = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    half = round(5 / (hz[1] - hz[0]))
    local_max = np.lib.stride_tricks.sliding_window_view(mag, 2 * half + 1).max(axis=1)  # (bins - 2 half,)
    peaks = np.flatnonzero(mag[half:-half] == local_max) + half
    return sorted(hz[peaks[np.argsort(-mag[peaks])][:k]])


def test_sound_onsets_and_clicks_where_the_scene_says():
    scene = av_scene()
    audio = S.render_sounds(scene, 6 * SAMPLE_RATE)
    assert audio.dtype == np.float32 and audio.shape == (6 * SAMPLE_RATE,)
    check_sound_onsets(scene, audio)
    for e in scene.sounds:  # peak amplitude = level
        segment = audio[round(e.onset * SAMPLE_RATE) : round((e.onset + e.duration) * SAMPLE_RATE)]
        assert abs(np.abs(segment).max() - e.level) < 1e-3


@pytest.mark.parametrize("count,duration", [(1, 0.5), (3, 1.0), (7, 2.1), (10, 1.0)])
def test_click_count_is_countable(count, duration):
    event = SoundEvent("clicks", 0.3, duration, count=count, level=0.5)
    audio = S.render_sounds(Scene("c", "audio", duration + 0.6, sounds=(event,)), round((duration + 0.6) * SAMPLE_RATE))
    onsets = detect_onsets(audio)
    assert len(onsets) == count
    assert np.allclose(onsets, 0.3 + np.arange(count) * duration / count, atol=0.005)


def test_clicks_too_close_are_refused():
    with pytest.raises(ValueError, match="closer than"):
        S.render_event(SoundEvent("clicks", 0, 0.5, count=10), np.random.default_rng(0))


@pytest.mark.parametrize("timbre", TIMBRES)
def test_chord_has_its_notes_and_tone_its_pitch(timbre):
    rng = np.random.default_rng(0)
    chord = S.render_event(SoundEvent("chord", 0, 1.0, timbre, (60, 64, 67)), rng)
    want = [440 * 2 ** ((m - 69) / 12) for m in (60, 64, 67)]  # 261.6, 329.6, 392.0 Hz
    assert np.allclose(spectral_peaks(chord, 3), want, atol=1.0)
    tone = S.render_event(SoundEvent("tone", 0, 0.5, timbre, (81,)), rng)
    assert np.allclose(spectral_peaks(tone, 1), [880.0], atol=1.0)
    # edges start and end at silence (no click); no sample-to-sample jump bigger than a 3.5 kHz sine's
    assert abs(tone[0]) < 1e-3 and abs(tone[-1]) < 1e-3 and np.abs(np.diff(tone)).max() < 0.9
    assert np.abs(tone[:8]).max() < 0.3 * 0.5 and np.abs(tone[-8:]).max() < 0.3 * 0.5  # ramps, not steps


def test_melody_plays_its_notes_in_order():
    notes = (60, 67, 64, 72)
    melody = S.render_event(SoundEvent("melody", 0, 2.0, "triangle", notes), np.random.default_rng(0))
    quarters = melody.reshape(4, -1)
    for q, m in zip(quarters, notes):
        assert np.allclose(spectral_peaks(q, 1), [440 * 2 ** ((m - 69) / 12)], atol=1.5)


@pytest.mark.parametrize("kind,ratio", [("white", 0.1), ("pink", 1.0), ("brown", 10.0)])
def test_noise_colours_have_their_spectra(kind, ratio):
    noise = S.background_noise(kind, 8 * SAMPLE_RATE, np.random.default_rng(1))
    assert abs(np.sqrt(np.mean(noise**2)) - 1) < 1e-6
    power = np.abs(np.fft.rfft(noise)) ** 2
    hz = np.fft.rfftfreq(noise.size, 1 / SAMPLE_RATE)
    band = lambda lo, hi: power[(hz >= lo) & (hz < hi)].sum()  # noqa: E731
    assert 1 / 1.4 < band(100, 200) / band(1000, 2000) / ratio < 1.4  # power ~ 1, 1/f, 1/f^2


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 12.0])
def test_mix_at_snr_measured(snr_db):
    signal = np.zeros(3 * SAMPLE_RATE, np.float32)
    active = slice(SAMPLE_RATE // 2, 3 * SAMPLE_RATE // 2)
    signal[active] = 0.3 * np.sin(2 * np.pi * 300 * np.arange(SAMPLE_RATE) / SAMPLE_RATE)
    noise = S.background_noise("white", signal.size, np.random.default_rng(2))
    mix = S.mix_at_snr(signal, noise, snr_db)
    added = mix.astype(np.float64) - signal
    measured = 10 * math.log10(np.mean(signal[active].astype(np.float64) ** 2) / np.mean(added**2))
    assert abs(measured - snr_db) < 0.5


def test_audio_track_noise_at_the_scene_snr_over_the_sounds():
    sounds = (SoundEvent("tone", 1.0, 2.0, "sine", (64,), level=0.3),)
    clean = S.audio_track(Scene("n", "audio", 4.0, sounds=sounds))
    noisy = S.audio_track(Scene("n", "audio", 4.0, sounds=sounds, noise="brown", noise_snr_db=6.0))
    assert clean.shape == noisy.shape == (4 * SAMPLE_RATE,) and noisy.dtype == np.float32
    assert np.abs(noisy).max() <= 1.0
    tone = clean[SAMPLE_RATE : 3 * SAMPLE_RATE].astype(np.float64)
    measured = 10 * math.log10(np.mean(tone**2) / np.mean((noisy.astype(np.float64) - clean) ** 2))
    assert abs(measured - 6.0) < 0.5
    assert np.array_equal(
        noisy, S.audio_track(Scene("n", "audio", 4.0, sounds=sounds, noise="brown", noise_snr_db=6.0))
    )
    said = Utterance("hello", "en-us", 160, 50, 0.2)  # with speech, the SNR is relative to the speech only
    fake = {said: (0.5 * np.sin(np.arange(SAMPLE_RATE // 2) / 4)).astype(np.float32)}
    clean = S.audio_track(Scene("n", "video", 4.0, sounds=sounds, speech=(said,)), fake)
    noisy = S.audio_track(Scene("n", "video", 4.0, sounds=sounds, speech=(said,), noise_snr_db=3.0), fake)
    assert np.abs(noisy).max() == pytest.approx(S.TRACK_PEAK)  # this mix is loud: all of it was scaled down
    gain = float(np.dot(noisy, clean) / np.dot(clean, clean))  # least squares: the noise is independent
    speech = gain * clean[round(0.2 * SAMPLE_RATE) : round(0.7 * SAMPLE_RATE)].astype(np.float64)
    measured = 10 * math.log10(np.mean(speech**2) / np.mean((noisy.astype(np.float64) - gain * clean) ** 2))
    assert gain < 0.8 and abs(measured - 3.0) < 0.5


def test_audio_track_places_given_speech_and_refuses_overruns():
    said = Utterance("hello", "en-us", 160, 50, 1.25)
    fake = np.concatenate([np.zeros(800), np.sin(np.arange(8000) / 3), np.zeros(800)]).astype(np.float32)
    track = S.audio_track(Scene("s", "video", 3.0, speech=(said,)), {said: fake})
    assert detect_onsets(track) == [pytest.approx(1.25 + 800 / SAMPLE_RATE, abs=0.003)]
    assert abs(np.abs(track).max() - S.SPEECH_PEAK) < 1e-3
    loud = (SoundEvent("noise", 0.5, 1.0, level=1.0), SoundEvent("tone", 0.5, 1.0, "sine", (69,), level=1.0))
    assert np.abs(S.audio_track(Scene("l", "audio", 2.0, sounds=loud))).max() <= S.TRACK_PEAK + 1e-6
    with pytest.raises(ValueError, match="past the clip"):
        S.audio_track(Scene("s", "video", 1.5, speech=(said,)), {said: fake})


# ---------------------------------------------------------------------------------------------- speech


@needs_espeak
def test_speech_is_deterministic_and_grows_with_the_words():
    from videosalmonn.savemini import speech

    short = Utterance("one two", "en+f3", 170, 40, 0.0)
    long = replace(short, text="one two three four five six seven eight")
    a = speech.synthesize(short)
    speech._speak.cache_clear()
    assert np.array_equal(a, speech.synthesize(short))  # a fresh espeak-ng run: the same samples
    b = speech.synthesize(long)
    assert a.dtype == np.float32 and 0.2 < a.size / SAMPLE_RATE < b.size / SAMPLE_RATE < 6
    m = round(speech.MARGIN * SAMPLE_RATE)
    assert np.all(a[:m] == 0) and np.all(a[-m:] == 0) and np.abs(a[m : m + 160]).max() > 0  # trimmed to MARGIN
    faster = speech.synthesize(replace(long, rate=320))
    assert faster.size < 0.75 * b.size
    raw = speech._espeak_wav(long.text, long.voice, long.rate, long.pitch)  # 22,050 Hz, untrimmed
    assert b.size / SAMPLE_RATE <= (len(raw) - 44) / 2 / 22050 + 2 * speech.MARGIN


@needs_espeak
def test_voices_are_english_espeak_voices_with_variants():
    from videosalmonn.savemini import speech

    names = speech.voices()
    assert {"en", "en-us", "en-us+f3", "en-gb-scotland+m3"} <= set(names)
    bases = {n.split("+")[0] for n in names}
    gmw = ("en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
    assert bases <= set(gmw)
    for base in bases:  # a variant changes every voice (espeak-ng ignores it on some names, e.g. "en-gb")
        plain = speech._espeak_wav("seven", base, 175, 50)
        assert plain != speech._espeak_wav("seven", f"{base}+f3", 175, 50), base
    assert not any("mb-" in n or n.endswith("+whisper") for n in names) and len(names) > 200
    with pytest.raises(InputError, match="not an English espeak-ng voice"):
        speech.synthesize(Utterance("hi", "en-us+nosuchvariant", 160, 50, 0.0))


@needs_espeak
def test_synthesized_speech_starts_at_its_onset_in_the_track():
    said = Utterance("the red circle", "en-us+m3", 180, 50, 0.7)
    track = S.audio_track(Scene("sp", "audio", 3.0, speech=(said,)))
    from videosalmonn.savemini.speech import MARGIN

    assert abs(detect_onsets(track)[0] - (0.7 + MARGIN)) < 0.02


# ---------------------------------------------------------------------------------------------- writers


@needs_font
def test_written_video_decodes_to_the_scene(tmp_path):
    scene = av_scene()
    frames, audio = F.render_frames(scene), S.audio_track(scene)
    path = tmp_path / "clip.mp4"
    write_video(path, frames, audio)
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]  # no temporary left
    info = probe_video(path)
    assert (info.frame_count, info.fps, info.duration, info.width) == (60, FPS, 6.0, FRAME_SIZE)
    sampled = sample_frames(path, "uniform")  # every 0.5 s
    for frame, t in zip(sampled.frames.numpy(), sampled.times):
        t = round(t * FPS) / FPS
        check_objects(scene, frame, t, H264_TOL, edge=0.2)
        word = scene.texts[0]
        x0, y0, x1, y1 = F.text_box(word)
        inked = np.all(np.abs(frame[y0:y1, x0:x1].astype(int) - COLOURS[word.colour]) <= H264_TOL, axis=-1).sum()
        assert (inked > 0.15 * (x1 - x0) * (y1 - y0)) == (word.appear <= t < word.disappear), t
    decoded = load_audio(path)
    assert decoded.samples.numel() == audio.size
    check_sound_onsets(scene, decoded.samples.numpy())


def test_written_audio_and_images_round_trip(tmp_path):
    scene = Scene("a", "audio", 2.0, sounds=(SoundEvent("clicks", 0.2, 1.5, count=5, level=0.7),))
    audio = S.audio_track(scene)
    for name in ("a.flac", "a.wav"):
        write_audio(tmp_path / name, audio)
        back = load_audio(tmp_path / name)
        assert back.samples.numel() == audio.size and np.abs(back.samples.numpy() - audio).max() < 1 / 2**15 + 1e-6
        check_sound_onsets(scene, back.samples.numpy())
    frame = F.render_frame(replace(av_scene(), kind="image", texts=()), 0.0)
    write_image(tmp_path / "f.png", frame)
    assert np.array_equal(np.asarray(load_image(tmp_path / "f.png")), frame)
    write_image(tmp_path / "f.jpg", frame)
    check_objects(replace(av_scene(), texts=()), np.asarray(load_image(tmp_path / "f.jpg")), 0.0, H264_TOL)
    with pytest.raises(ValueError):
        write_video(tmp_path / "bad.mp4", frame, audio)  # (H, W, 3): not a stack of frames
    with pytest.raises(Exception):  # noqa: B017  odd sizes cannot be yuv420p: the encoder fails mid-write
        write_video(tmp_path / "odd.mp4", np.zeros((2, 15, 15, 3), np.uint8), audio)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.flac", "a.wav", "f.jpg", "f.png"]


def test_missing_font_or_espeak_says_what_to_install(monkeypatch, tmp_path):
    from videosalmonn.savemini import speech

    monkeypatch.setattr(F, "FONT_PATH", tmp_path / "none.ttf")
    F._font.cache_clear()
    F._font_px.cache_clear()
    word = OnScreenText("unlikely", "red", 0.0, 1.0, (0.5, 0.5), 0.137)
    with pytest.raises(InputError, match="apt-get install fonts-dejavu-core"):
        F.render_frame(Scene("w", "image", 0.0, texts=(word,)), 0.0)
    F._font.cache_clear()
    F._font_px.cache_clear()
    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    speech._voice_tables.cache_clear()
    with pytest.raises(InputError, match="espeak-ng not found: apt-get install espeak-ng"):
        speech.synthesize(Utterance("hello", "en-us", 160, 50, 0.0))
    speech._voice_tables.cache_clear()
