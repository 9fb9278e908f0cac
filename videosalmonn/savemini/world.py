"""The SAVE-mini sampler: which clip is which task, and each clip's Scene, drawn from seeds alone.

How generate.py calls it (all pure and deterministic; clip i is the same whatever else is generated):

    plans = world.plan_world(seed, n_train, n_val, n_test)   # list[ClipPlan], cheap: no speech, no drawing
    # in worker processes, in any order, any subset (resume: skip the plans whose clip_id is in scenes.jsonl):
    scene = world.build_scene(plan, speech_seconds)          # Scene; speech_seconds(Utterance) -> float seconds
    files = manifests.media_files(scene)                     # {"video"|"audio"|"image": path under the world}
    ... render `files`, record scene_to_dict(scene) in scenes.jsonl ...
    # at the end, from scenes.jsonl (scene_from_dict), in plan order:
    samples = [s for scene in scenes for s in tasks.build_samples(scene)]          # list[TaskSample]
    info = manifests.write_manifests(out_dir, samples, {"seed": seed, ...})   # world.json as a dict

A `ClipPlan` is (seed, split, index, task, ordinal): the task comes from a fixed interleaved SCHEDULE (index mod
its length), and `ordinal` (the clip's rank among its split's clips of that task) picks the task's variant in
turn (the question type; for AVM matched/mismatched and video/image), so every prefix of a split is balanced
and AVM is 50/50 Yes/No. `build_scene` draws everything else from `random.Random(f"{seed}/{split}/{index}")`.
`speech_seconds` is called on candidate utterances only (each accepted one once, rejected long ones too); the
renderer must then speak `Utterance.text` with that voice, rate and pitch and get the same length.

What a scene guarantees (tests/test_savemini_world.py checks every one):
* 2 s <= duration <= 20 s (an image: 0, or its speech's length when it has a spoken description);
* objects and texts stay inside the frame and never overlap while both are visible (exact test of their moving,
  growing boxes; a text's box comes from DejaVu Sans Bold's glyph widths, `text_extent`, and bounds the ink
  frames.py draws: tested);
* every object and text is visible >= MIN_VISIBLE; flash onsets anywhere in a clip are >= FLASH_GAP apart and a
  flash ends before its object disappears;
* sound events never overlap (a chord is one event), and an event with a `source` starts exactly at one of
  that object's flashes;
* a scene's colours are all different and so are its shapes, so "the star" or "the blue object" is one object;
* speech, voices, (colour, shape) and (shape, action) pairs follow splits.py.
Tags ("key=value" or a flag) carry what the task builder needs: task, split, question type, the asked object.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace

from videosalmonn.savemini import splits, vocab
from videosalmonn.savemini.scene import (
    BACKGROUNDS,
    COLOURS,
    FLASH_SECONDS,
    MIN_VISIBLE,
    NOISE_KINDS,
    SHAPES,
    SIZES,
    TIMBRES,
    OnScreenText,
    Scene,
    SoundEvent,
    Utterance,
    VisualObject,
)

TASKS = ("asr", "aac", "ic", "ocr", "vqa", "video-qa", "avsr", "avqa-presentation", "avssd", "avm", "music-avqa")
# one cycle of the task schedule: ASR and AVM (two groups x Yes/No) twice, the others once
SCHEDULE = TASKS + ("asr", "avm")
KINDS = {"asr": "audio", "aac": "audio", "ic": "image", "ocr": "image", "vqa": "image"}  # the rest: video

MIN_CLIP, MAX_CLIP = 2.0, 20.0
FLASH_GAP = FLASH_SECONDS + MIN_VISIBLE  # s between any two flash onsets: an object is seen coloured in between
ORDER_GAP = 1.0  # s between appearances (and between disappearances) that a question orders
SYNC_MISS = 0.7  # s: an unrelated sound starts at least this far from every flash onset (so not during a flash)
MARGIN = 0.03  # frame fraction kept free between any two boxes
# DejaVu Sans Bold advance widths in text heights (a text's height is its capital H, frames.py), measured with
# PIL's getlength on fonts-dejavu-core; a word's ink is at most their sum + TEXT_OVERHANG wide and 2 x
# TEXT_HALF_HEIGHT tall (ascenders and descenders), centred on its position
GLYPH_WIDTHS = {
    **dict(zip("abcdefghijklm", (0.926, 0.982, 0.813, 0.982, 0.93, 0.597, 0.982, 0.977, 0.47, 0.47, 0.912, 0.47,
                                 1.429), strict=True)),
    **dict(zip("nopqrstuvwxyz", (0.977, 0.942, 0.982, 0.982, 0.677, 0.816, 0.656, 0.977, 0.894, 1.267, 0.885, 0.894,
                                 0.798), strict=True)),
    **dict.fromkeys("0123456789", 0.954),
}  # fmt: skip
TEXT_OVERHANG = 0.3  # side bearings, and the font size rounded to whole pixels
TEXT_HALF_HEIGHT = 0.7
TEXT_WIDTH = 0.8  # a text line is at most this fraction of the frame wide
MAX_SPEECH = 15.0  # s of speech in one utterance
NOTE_RANGES = {"low": (45, 55), "medium": (60, 67), "high": (76, 84)}  # MIDI notes of a tone, by register
SCALE = (60, 62, 64, 65, 67, 69, 71, 72, 74, 76, 77, 79)  # C major: melodies
MOVE_MIN = 0.25  # a move covers at least this fraction of the frame
GROW_MIN, SHRINK_MAX = 1.5, 0.6  # a growing object ends >= 1.5x its size, a shrinking one <= 0.6x
SpeechSeconds = Callable[[Utterance], float]


class Retry(Exception):
    """A draw that does not fit (objects that cannot be placed, a clip too long): the builder draws again."""


# ------------------------------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class ClipPlan:
    seed: int
    split: str
    index: int
    task: str
    ordinal: int  # this clip's rank among the split's clips of the same task: picks the variant in turn

    @property
    def clip_id(self) -> str:
        return f"{self.split}-{self.index:06d}"

    @property
    def avm_match(self) -> bool:
        return self.ordinal % 2 == 0

    @property
    def avm_group(self) -> str:
        return ("vggss", "spokencoco")[(self.ordinal // 2) % 2]

    @property
    def kind(self) -> str:
        if self.task == "avm":
            return "video" if self.avm_group == "vggss" else "image"
        return KINDS.get(self.task, "video")


def plan_clip(seed: int, split: str, index: int) -> ClipPlan:
    cycle, slot = divmod(index, len(SCHEDULE))
    task = SCHEDULE[slot]
    per_cycle = SCHEDULE.count(task)
    ordinal = cycle * per_cycle + SCHEDULE[:slot].count(task)
    return ClipPlan(seed, splits.check_split(split), index, task, ordinal)


def plan_world(seed: int, n_train: int, n_val: int, n_test: int) -> list[ClipPlan]:
    """Every clip of the world, train then val then test, each split indexed from 0."""
    counts = {"train": n_train, "val": n_val, "test": n_test}
    return [plan_clip(seed, split, i) for split in splits.SPLITS for i in range(counts[split])]


def clip_rng(seed: int, split: str, index: int) -> random.Random:
    return random.Random(f"{seed}/{split}/{index}")


def build_scene(plan: ClipPlan, speech_seconds: SpeechSeconds) -> Scene:
    """The clip's Scene (draws again, from the same generator, until everything fits)."""
    rng = clip_rng(plan.seed, plan.split, plan.index)
    render_seed = rng.randrange(2**31)
    builder = BUILDERS[plan.task]
    for _ in range(200):
        try:
            fields = builder(Draw(rng, plan, speech_seconds))
        except Retry:
            continue
        tags = (f"task={plan.task}", f"split={plan.split}", *fields.pop("tags", ()))
        scene = Scene(id=plan.clip_id, kind=plan.kind, seed=render_seed, tags=tags, **fields)
        if scene.kind != "image" and not MIN_CLIP <= scene.duration <= MAX_CLIP:
            continue
        return scene
    raise RuntimeError(f"{plan.clip_id}: no {plan.task} scene fits after 200 draws (a bug in world.py)")


@dataclass
class Draw:
    """What one scene builder draws with: the clip's generator, its plan, and the speech timer."""

    rng: random.Random
    plan: ClipPlan
    speech_seconds: SpeechSeconds

    @property
    def split(self) -> str:
        return self.plan.split


# ------------------------------------------------------------------------------------- boxes and placement


@dataclass(frozen=True)
class Box:
    """An axis-aligned box whose centre and half sizes go linearly from (x0, y0, hx0, hy0) at t0 to (x1, ...) at
    t1; it is on screen for t0 <= t < t1."""

    t0: float
    t1: float
    x0: float
    y0: float
    x1: float
    y1: float
    hx0: float
    hy0: float
    hx1: float
    hy1: float

    def at(self, t: float) -> tuple[float, float, float, float]:
        a = 0.0 if self.t1 <= self.t0 else (t - self.t0) / (self.t1 - self.t0)
        return (
            self.x0 + a * (self.x1 - self.x0),
            self.y0 + a * (self.y1 - self.y0),
            self.hx0 + a * (self.hx1 - self.hx0),
            self.hy0 + a * (self.hy1 - self.hy0),
        )


def object_box(o: VisualObject) -> Box:
    r0 = SIZES[o.size]
    r1 = r0 * o.grow
    return Box(o.appear, o.disappear, *o.start, *o.end, r0, r0, r1, r1)


def text_extent(text: str, height: float) -> tuple[float, float]:
    """(half width, half height) of a text's box, as fractions of the frame (lower-case letters and digits)."""
    return 0.5 * height * text_advance(text), TEXT_HALF_HEIGHT * height


def text_advance(text: str) -> float:
    return sum(GLYPH_WIDTHS[c] for c in text) + TEXT_OVERHANG


def text_box(t: OnScreenText) -> Box:
    hx, hy = text_extent(t.text, t.height)
    return Box(t.appear, t.disappear, *t.position, *t.position, hx, hy, hx, hy)


def text_height(text: str) -> float:
    """The largest height up to 0.16 at which `text` is at most TEXT_WIDTH of the frame wide."""
    return round(min(0.16, TEXT_WIDTH / text_advance(text)) - 0.0005, 3)


def inside_frame(b: Box) -> bool:
    """Linear motion and size: the box is inside at every time iff it is at both ends."""
    ends = ((b.x0, b.hx0), (b.y0, b.hy0), (b.x1, b.hx1), (b.y1, b.hy1))
    return all(h <= c <= 1 - h for c, h in ends)


def boxes_overlap(a: Box, b: Box, margin: float = MARGIN) -> bool:
    """Whether the boxes (grown by margin / 2 each) overlap at some time both are on screen (exact)."""
    lo, hi = max(a.t0, b.t0), min(a.t1, b.t1)
    if hi <= lo:
        return False
    start, end = lo, hi
    at_lo, at_hi = (a.at(lo), b.at(lo)), (a.at(hi), b.at(hi))
    for axis in (0, 1):
        d_lo, d_hi = at_lo[0][axis] - at_lo[1][axis], at_hi[0][axis] - at_hi[1][axis]
        s_lo = at_lo[0][axis + 2] + at_lo[1][axis + 2] + margin
        s_hi = at_hi[0][axis + 2] + at_hi[1][axis + 2] + margin
        for f_lo, f_hi in ((d_lo - s_lo, d_hi - s_hi), (-d_lo - s_lo, -d_hi - s_hi)):
            part = _negative_part(f_lo, f_hi, lo, hi)
            if part is None:
                return False
            start, end = max(start, part[0]), min(end, part[1])
            if end <= start:
                return False
    return True


def _negative_part(f_lo: float, f_hi: float, lo: float, hi: float) -> tuple[float, float] | None:
    """Where the linear function from f_lo (at lo) to f_hi (at hi) is negative."""
    if f_lo < 0 and f_hi < 0:
        return lo, hi
    if f_lo >= 0 and f_hi >= 0:
        return None
    root = lo + (hi - lo) * f_lo / (f_lo - f_hi)
    return (lo, root) if f_lo < 0 else (root, hi)


def fits(box: Box, placed: list[Box]) -> bool:
    return inside_frame(box) and not any(boxes_overlap(box, p) for p in placed)


def place(propose: Callable[[], VisualObject | OnScreenText], placed: list[Box], tries: int = 100):
    """The first proposal that fits among the `placed` boxes (which it joins); Retry if none does."""
    for _ in range(tries):
        thing = propose()
        box = object_box(thing) if isinstance(thing, VisualObject) else text_box(thing)
        if fits(box, placed):
            placed.append(box)
            return thing
    raise Retry


# ------------------------------------------------------------------------------------------------ helpers


def r2(t: float) -> float:
    return round(t, 2)


def r3(x: float) -> float:
    return round(x, 3)


def looks(d: Draw, n: int, want_heldout: bool | None = None) -> list[tuple[str, str]]:
    """n (colour, shape) pairs, all colours and all shapes different, allowed in the split. In test, half the
    draws (or as `want_heldout` says) contain at least one held-out combo."""
    if n == 0:
        return []
    if want_heldout is None:
        want_heldout = d.split == "test" and d.rng.random() < 0.5
    for _ in range(1000):
        pairs = list(zip(d.rng.sample(list(COLOURS), n), d.rng.sample(SHAPES, n), strict=True))
        if not all(splits.combo_allowed(c, s, d.split) for c, s in pairs):
            continue
        if want_heldout and not any(p in splits.HELDOUT_COMBOS for p in pairs):
            continue
        return pairs
    raise Retry


def combo_tags(objects: tuple[VisualObject, ...] | list[VisualObject]) -> tuple[str, ...]:
    return ("heldout-combo",) if any((o.colour, o.shape) in splits.HELDOUT_COMBOS for o in objects) else ()


def static_object(
    d: Draw, oid: str, look: tuple[str, str], appear: float, disappear: float, size: str | None = None, flashes=()
) -> Callable[[], VisualObject]:
    """A proposer of a still object at a random place."""
    size = size or d.rng.choice(tuple(SIZES))

    def propose() -> VisualObject:
        r = SIZES[size]
        xy = (r3(d.rng.uniform(r, 1 - r)), r3(d.rng.uniform(r, 1 - r)))
        return VisualObject(oid, look[1], look[0], size, r2(appear), r2(disappear), xy, xy, 1.0, tuple(flashes))

    return propose


def still_objects(
    d: Draw, pairs: list[tuple[str, str]], appear: float, disappear: float, placed: list[Box], flashes=None
) -> list[VisualObject]:
    """Still objects o0, o1, ... for `pairs`, on screen from appear to disappear (flashes: per object)."""
    flashes = flashes or [()] * len(pairs)
    return [
        place(static_object(d, f"o{i}", p, appear, disappear, flashes=f), placed)
        for i, (p, f) in enumerate(zip(pairs, flashes, strict=True))
    ]


def voice(d: Draw) -> str:
    unseen = d.split == "test" and d.rng.random() < 0.5
    pool = [v for v in splits.VOICES if splits.unseen_voice(v) == unseen]
    return d.rng.choice(pool)


def utterance(
    d: Draw, make: Callable[[random.Random], vocab.Sentence], onset: float, max_seconds: float = MAX_SPEECH
) -> tuple[Utterance, float, vocab.Sentence]:
    """A sentence of the clip's split (splits.sentence_split), spoken by a voice of the split, <= max_seconds."""
    for _ in range(2000):
        sentence = make(d.rng)
        if splits.sentence_split(sentence.text) != d.split:
            continue
        utt = Utterance(sentence.text, voice(d), d.rng.randint(130, 190), d.rng.randint(25, 75), r2(onset))
        seconds = float(d.speech_seconds(utt))
        if seconds <= max_seconds:
            return utt, seconds, sentence
    raise Retry


def voice_tags(utt: Utterance) -> tuple[str, ...]:
    return ("unseen-voice",) if splits.unseen_voice(utt.voice) else ()


def flash_times(d: Draw, n: int, start: float, spread: float = 0.6, gap: float = FLASH_GAP) -> list[float]:
    """n flash onsets from `start`, gap .. gap + spread apart (gap >= FLASH_GAP)."""
    times, t = [], start
    for _ in range(n):
        times.append(r2(t))
        t = times[-1] + gap + d.rng.uniform(0.0, spread)
    return times


def deal(d: Draw, times: list[float], counts: list[int]) -> list[tuple[float, ...]]:
    """Share `times` (sum(counts) of them) among objects at random: object i gets counts[i], each sorted."""
    owners = [i for i, c in enumerate(counts) for _ in range(c)]
    d.rng.shuffle(owners)
    return [tuple(t for t, o in zip(times, owners, strict=True) if o == i) for i in range(len(counts))]


# --------------------------------------------------------------------------------------------------- sounds


def sound(d: Draw, kind: str, onset: float, max_duration: float = 1.5, source: str = "", **fixed) -> SoundEvent:
    """One event of `kind` from `onset`, at most max_duration long; `fixed` overrides drawn fields."""
    rng = d.rng
    base = {"level": round(rng.uniform(0.3, 0.6), 2), "timbre": rng.choice(TIMBRES)}
    if kind == "tone":
        lo, hi = NOTE_RANGES[rng.choice(tuple(NOTE_RANGES))]
        fields = {"notes": (rng.randint(lo, hi),), "duration": rng.uniform(0.3, min(1.2, max_duration))}
    elif kind == "chord":
        root = rng.randint(57, 64)
        third = rng.choice((3, 4))
        fields = {"notes": (root, root + third, root + 7), "duration": rng.uniform(0.4, min(1.5, max_duration))}
    elif kind == "noise":
        fields = {"noise": rng.choice(NOISE_KINDS), "duration": rng.uniform(0.3, min(1.2, max_duration))}
    elif kind == "clicks":
        count = fixed.pop("count", None) or rng.randint(2, 6)
        spacing = min(rng.uniform(0.15, 0.3), max_duration / count)
        fields = {"count": count, "duration": count * spacing}
    elif kind == "melody":
        n = fixed.pop("n_notes", None) or rng.randint(3, 6)
        fields = {"notes": melody_notes(d, n), "duration": n * min(rng.uniform(0.2, 0.35), max_duration / n)}
    else:
        raise ValueError(f"unknown sound kind {kind!r}")
    fields = {**base, **fields, **fixed}
    fields["duration"] = r2(fields["duration"])
    return SoundEvent(kind=kind, onset=r2(onset), source=source, **fields)


def melody_notes(d: Draw, n: int) -> tuple[int, ...]:
    """n notes of SCALE, rising, falling or wavering; no note repeats the one before (each onset is heard)."""
    contour = d.rng.choice(("rising", "falling", "wavering"))
    if contour != "wavering":
        notes = sorted(d.rng.sample(SCALE, n))
        return tuple(notes if contour == "rising" else notes[::-1])
    while True:
        i = d.rng.randrange(len(SCALE))
        degrees = [i]
        for _ in range(n - 1):
            steps = [s for s in (-3, -2, -1, 1, 2, 3) if 0 <= degrees[-1] + s < len(SCALE)]
            degrees.append(degrees[-1] + d.rng.choice(steps))
        notes = [SCALE[k] for k in degrees]
        if notes != sorted(notes) and notes != sorted(notes, reverse=True):
            return tuple(notes)


def sequence(d: Draw, kinds: list[str], start: float, gap=(0.25, 0.8), **kw) -> list[SoundEvent]:
    """Events of `kinds` one after another from `start`, with silent gaps between them."""
    events, t = [], start
    for kind in kinds:
        event = sound(d, kind, t, **kw)
        events.append(event)
        t = event.onset + event.duration + d.rng.uniform(*gap)
    return events


def sync_sounds(d: Draw, objects: list[VisualObject], styles: dict[str, dict]) -> list[SoundEvent]:
    """A sound at every flash of each object in `styles` (its kind and fixed fields), sourced by it."""
    events = []
    for o in objects:
        if o.id in styles:
            style = dict(styles[o.id])
            events += [sound(d, onset=t, max_duration=FLASH_GAP - 0.4, source=o.id, **style) for t in o.flashes]
    return sorted(events, key=lambda e: e.onset)


def sound_style(d: Draw, kind: str | None = None) -> dict:
    """The fixed look of an object's sound, repeated at each of its flashes: kind, timbre, notes."""
    kind = kind or d.rng.choice(("tone", "chord", "noise", "clicks"))
    probe = sound(d, kind, 0.0, max_duration=FLASH_GAP - 0.4)
    return {
        "kind": kind,
        "timbre": probe.timbre,
        "notes": probe.notes,
        "noise": probe.noise,
        "count": probe.count,
        "duration": probe.duration,
        "level": probe.level,
    }


def off_screen_sounds(d: Draw, duration: float) -> list[SoundEvent]:
    """0 (half the time) or 1-3 quiet unrelated sounds that fit in `duration`."""
    if d.rng.random() < 0.5:
        return []
    kinds = [d.rng.choice(("tone", "chord", "noise")) for _ in range(d.rng.randint(1, 3))]
    events = sequence(d, kinds, d.rng.uniform(0.2, 1.0), gap=(0.5, 2.0))
    return [e for e in events if e.onset + e.duration <= duration - 0.1]


def background_noise(d: Draw, probability: float, snr=(10.0, 20.0)) -> dict:
    if d.rng.random() >= probability:
        return {}
    return {"noise": d.rng.choice(NOISE_KINDS), "noise_snr_db": round(d.rng.uniform(*snr), 1)}


def end_after(t: float, d: Draw, tail=(0.3, 0.8)) -> float:
    return r2(max(MIN_CLIP, t + d.rng.uniform(*tail)))


# ----------------------------------------------------------------------------------------------- builders


def build_asr(d: Draw) -> dict:
    onset = d.rng.uniform(0.2, 0.8)
    utt, seconds, _ = utterance(d, vocab.sentence, onset, min(MAX_SPEECH, MAX_CLIP - 2))
    return {"duration": end_after(utt.onset + seconds, d), "speech": (utt,), "tags": voice_tags(utt)}


def build_aac(d: Draw) -> dict:
    kinds = [d.rng.choice(("tone", "chord", "noise", "clicks", "melody")) for _ in range(d.rng.randint(1, 4))]
    events = sequence(d, kinds, d.rng.uniform(0.2, 0.8))
    end = events[-1].onset + events[-1].duration
    return {"duration": end_after(end, d), "sounds": tuple(events), **background_noise(d, 0.3)}


def build_ic(d: Draw) -> dict:
    pairs = looks(d, d.rng.randint(1, 4))
    objects = still_objects(d, pairs, 0.0, 1.0, [])
    return {"duration": 0.0, "background": d.rng.choice(tuple(BACKGROUNDS)), "objects": tuple(objects),
            "tags": combo_tags(objects)}  # fmt: skip


def build_ocr(d: Draw) -> dict:
    word = vocab.ocr_text(d.rng)
    height = text_height(word)
    hx, hy = text_extent(word, height)
    colour = d.rng.choice(tuple(COLOURS))
    placed: list[Box] = []

    def propose_text() -> OnScreenText:
        xy = (r3(d.rng.uniform(hx, 1 - hx)), r3(d.rng.uniform(hy, 1 - hy)))
        return OnScreenText(word, colour, 0.0, 1.0, xy, height)

    text = place(propose_text, placed)
    objects = still_objects(d, looks(d, d.rng.randint(0, 3)), 0.0, 1.0, placed)
    return {"duration": 0.0, "background": d.rng.choice(tuple(BACKGROUNDS)), "objects": tuple(objects),
            "texts": (text,), "tags": combo_tags(objects)}  # fmt: skip


VQA_QUESTIONS = ("colour", "shape", "count", "size", "left-of", "background")


def build_vqa(d: Draw) -> dict:
    question = VQA_QUESTIONS[d.plan.ordinal % len(VQA_QUESTIONS)]
    objects = still_objects(d, looks(d, d.rng.randint(2, 5)), 0.0, 1.0, [])
    ask: list[VisualObject] = []
    if question in ("colour", "shape", "size"):
        ask = [d.rng.choice(objects)]
    elif question == "left-of":
        pairs = [(a, b) for a in objects for b in objects if a is not b and abs(a.start[0] - b.start[0]) >= 0.2]
        if not pairs:
            raise Retry
        ask = list(d.rng.choice(pairs))
    tags = (f"question={question}", *([f"ask={','.join(o.id for o in ask)}"] if ask else []), *combo_tags(objects))
    return {"duration": 0.0, "background": d.rng.choice(tuple(BACKGROUNDS)), "objects": tuple(objects), "tags": tags}


VIDEO_QA_QUESTIONS = ("after", "before", "first", "last", "action", "vanished-first")


def build_video_qa(d: Draw) -> dict:
    question = VIDEO_QA_QUESTIONS[d.plan.ordinal % len(VIDEO_QA_QUESTIONS)]
    fields = action_scene(d) if question == "action" else order_scene(d)
    objects = fields["objects"]
    ask = ""
    if question == "after":
        ask = d.rng.choice(sorted(objects, key=lambda o: o.appear)[:-1]).id
    elif question == "before":
        ask = d.rng.choice(sorted(objects, key=lambda o: o.appear)[1:]).id
    elif question == "action":
        ask = fields.pop("ask")
    tags = (f"question={question}", *([f"ask={ask}"] if ask else []), *fields.pop("tags"), *combo_tags(objects))
    sounds = off_screen_sounds(d, fields["duration"])
    return {**fields, "sounds": tuple(sounds), "background": d.rng.choice(tuple(BACKGROUNDS)), "tags": tags}


def order_scene(d: Draw) -> dict:
    """4-5 still objects appearing >= ORDER_GAP apart and disappearing >= ORDER_GAP apart."""
    n = d.rng.randint(4, 5)
    appear = [r2(d.rng.uniform(0.3, 1.0))]
    for _ in range(n - 1):
        appear.append(r2(appear[-1] + d.rng.uniform(ORDER_GAP + 0.01, ORDER_GAP + 0.8)))
    disappear = [r2(a + d.rng.uniform(2.5, 6.0)) for a in appear]
    ends = sorted(disappear)
    if any(b - a < ORDER_GAP for a, b in zip(ends, ends[1:])):
        raise Retry
    placed: list[Box] = []
    objects = [
        place(static_object(d, f"o{i}", p, a, e), placed)
        for i, (p, a, e) in enumerate(zip(looks(d, n), appear, disappear, strict=True))
    ]
    return {"duration": end_after(max(o.disappear for o in objects), d), "objects": tuple(objects), "tags": ()}


def action_scene(d: Draw) -> dict:
    """3-4 objects on screen together, each doing one different action of splits.ACTIONS; one is asked about."""
    n = d.rng.randint(3, 4)
    actions = d.rng.sample(splits.ACTIONS, n)
    pairs = looks(d, n)
    if d.split == "test" and d.rng.random() < 0.5:  # the asked object does a held-out (shape, action)
        shape, action = d.rng.choice(sorted(splits.HELDOUT_MOTIONS))
        if shape not in [s for _, s in pairs[1:]] and action not in actions[1:]:
            pairs[0], actions[0] = (pairs[0][0], shape), action
    if not all(splits.motion_allowed(s, a, d.split) for (_, s), a in zip(pairs, actions, strict=True)):
        raise Retry
    if not all(splits.combo_allowed(c, s, d.split) for c, s in pairs):
        raise Retry
    life = d.rng.uniform(4.0, 7.0)
    placed: list[Box] = []
    objects = []
    for i, (look, action) in enumerate(zip(pairs, actions, strict=True)):
        appear = d.rng.uniform(0.2, 0.8)
        objects.append(place(acting_object(d, f"o{i}", look, action, appear, appear + life), placed))
    ask = objects[0]
    tags = ("heldout-motion",) if (ask.shape, actions[0]) in splits.HELDOUT_MOTIONS else ()
    d.rng.shuffle(objects)
    duration = end_after(max(o.disappear for o in objects), d)
    return {"duration": duration, "objects": tuple(objects), "ask": ask.id, "tags": tags}


def acting_object(
    d: Draw, oid: str, look: tuple[str, str], action: str, appear: float, disappear: float
) -> Callable[[], VisualObject]:
    rng = d.rng
    size = {"grew": "small", "shrank": rng.choice(("medium", "large"))}.get(action) or rng.choice(("small", "medium"))
    r = SIZES[size]

    def propose() -> VisualObject:
        x, y = rng.uniform(r, 1 - r), rng.uniform(r, 1 - r)
        dist = rng.uniform(MOVE_MIN + 0.02, 0.4)
        dx, dy = {
            "moved left": (-dist, 0),
            "moved right": (dist, 0),
            "moved up": (0, -dist),
            "moved down": (0, dist),
        }.get(action, (0, 0))
        grow = {"grew": rng.uniform(GROW_MIN + 0.1, 2.0), "shrank": rng.uniform(0.45, SHRINK_MAX - 0.05)}.get(
            action, 1.0
        )
        flashes = ()
        if action == "flashed":
            flashes = tuple(flash_times(d, rng.randint(1, 2), appear + rng.uniform(0.6, 1.5)))
            if flashes[-1] + FLASH_SECONDS > disappear - 0.2:
                flashes = flashes[:1]
        start, end = (r3(x), r3(y)), (r3(x + dx), r3(y + dy))
        return VisualObject(oid, look[1], look[0], size, r2(appear), r2(disappear), start, end, round(grow, 2), flashes)

    return propose


def build_avsr(d: Draw) -> dict:
    onset = d.rng.uniform(0.5, 1.2)
    utt, seconds, sentence = utterance(d, vocab.sentence, onset, MAX_CLIP - 3)
    end = utt.onset + seconds
    height = text_height(sentence.key)
    hx, hy = text_extent(sentence.key, height)
    colour = d.rng.choice(tuple(COLOURS))
    placed: list[Box] = []

    def propose_text() -> OnScreenText:
        xy = (r3(d.rng.uniform(hx, 1 - hx)), r3(d.rng.uniform(hy, 1 - hy)))
        return OnScreenText(sentence.key, colour, r2(max(0.0, utt.onset - 0.3)), r2(end + 0.3), xy, height)

    text = place(propose_text, placed)
    duration = end_after(max(end, text.disappear), d)
    objects = still_objects(d, looks(d, d.rng.randint(0, 2)), 0.0, duration, placed)
    noise = {"noise": d.rng.choice(NOISE_KINDS), "noise_snr_db": round(d.rng.uniform(-5.0, 5.0), 1)}
    return {"duration": duration, "background": d.rng.choice(tuple(BACKGROUNDS)), "objects": tuple(objects),
            "texts": (text,), "speech": (utt,), **noise, "tags": (*voice_tags(utt), *combo_tags(objects))}  # fmt: skip


AVQA_QUESTIONS = ("colour-of-shape", "shape-of-colour", "where-is-shape")
AVQA_SLOTS = ((0.2, 0.5), (0.8, 0.5), (0.5, 0.2), (0.5, 0.8))  # left, right, top, bottom


def build_avqa(d: Draw) -> dict:
    question = AVQA_QUESTIONS[d.plan.ordinal % len(AVQA_QUESTIONS)]
    pairs = looks(d, 4)
    target = d.rng.randrange(4)
    colour, shape = pairs[target]
    make = (lambda rng: vocab.mention_colour(rng, colour)) if question == "shape-of-colour" else None
    make = make or (lambda rng: vocab.mention_shape(rng, shape))
    utt, seconds, _ = utterance(d, make, d.rng.uniform(0.3, 1.0), 10.0)
    duration = end_after(utt.onset + seconds, d, (0.5, 1.5))
    slots = d.rng.sample(AVQA_SLOTS, 4)
    placed: list[Box] = []
    objects = []
    for i, (look, (x, y)) in enumerate(zip(pairs, slots, strict=True)):
        size = d.rng.choice(("small", "medium"))

        def propose(i=i, look=look, x=x, y=y, size=size) -> VisualObject:
            xy = (r3(x + d.rng.uniform(-0.04, 0.04)), r3(y + d.rng.uniform(-0.04, 0.04)))
            return VisualObject(f"o{i}", look[1], look[0], size, 0.0, duration, xy, xy)

        objects.append(place(propose, placed))
    tags = (f"question={question}", f"ask=o{target}", *voice_tags(utt), *combo_tags(objects))
    return {"duration": duration, "background": d.rng.choice(tuple(BACKGROUNDS)), "objects": tuple(objects),
            "speech": (utt,), "tags": tags}  # fmt: skip


def flashing_scene(d: Draw, counts: list[int], spread: float = 0.6, gap: float = FLASH_GAP) -> tuple[list, float]:
    """Still objects (one per count) visible all clip long, object i flashing counts[i] times, all flashes
    gap .. gap + spread apart. Returns (objects, duration)."""
    times = flash_times(d, sum(counts), d.rng.uniform(0.5, 1.0), spread, gap)
    duration = end_after((times[-1] if times else 1.0) + FLASH_SECONDS, d, (0.5, 1.0))
    return still_objects(d, looks(d, len(counts)), 0.0, duration, [], deal(d, times, counts)), duration


def build_avssd(d: Draw) -> dict:
    n = d.rng.randint(3, 4)
    counts = [d.rng.randint(1, 2) for _ in range(n)]
    objects, duration = flashing_scene(d, counts)
    source = d.rng.choice(objects)
    sounds = sync_sounds(d, objects, {source.id: sound_style(d)})
    return {"duration": duration, "background": d.rng.choice(tuple(BACKGROUNDS)), "objects": tuple(objects),
            "sounds": tuple(sounds), **background_noise(d, 0.3),
            "tags": (f"ask={source.id}", *combo_tags(objects))}  # fmt: skip


def build_avm(d: Draw) -> dict:
    match, group = d.plan.avm_match, d.plan.avm_group
    tags = (f"avm={'yes' if match else 'no'}", f"group={group}")
    fields = avm_video(d, match) if group == "vggss" else avm_image(d, match)
    return {**fields, "tags": (*tags, *fields.pop("tags"))}


def avm_video(d: Draw, match: bool) -> dict:
    """Objects that flash with their own sounds. "No": the flashes are silent and the sounds (of other,
    unseen objects) start off the beat, halfway between two flashes or after the last, never while one flashes."""
    n = d.rng.randint(2, 3)
    counts = [d.rng.randint(1, 2) for _ in range(n)]
    objects, duration = flashing_scene(d, counts, spread=0.6, gap=FLASH_GAP + 0.2)
    if match:
        sounds = sync_sounds(d, objects, {o.id: sound_style(d) for o in objects})
    else:
        flashes = sorted(t for o in objects for t in o.flashes)
        slots = [r2((a + b) / 2) for a, b in zip(flashes, flashes[1:])] + [r2(flashes[-1] + d.rng.uniform(0.9, 1.3))]
        onsets = sorted(d.rng.sample(slots, d.rng.randint(1, len(slots))))
        styles = [sound_style(d) for _ in range(d.rng.randint(1, 2))]
        sounds = [sound(d, onset=t, max_duration=FLASH_GAP - 0.4, **dict(d.rng.choice(styles))) for t in onsets]
        duration = max(duration, end_after(onsets[-1] + FLASH_GAP - 0.4, d))
        objects = [replace(o, disappear=duration) for o in objects]
    return {"duration": duration, "background": d.rng.choice(tuple(BACKGROUNDS)), "objects": tuple(objects),
            "sounds": tuple(sounds), "tags": combo_tags(objects)}  # fmt: skip


def avm_image(d: Draw, match: bool) -> dict:
    """A picture and a spoken description of it, or ("No") of another picture with at least one other shape."""
    n = d.rng.randint(2, 3)
    pairs = looks(d, n)
    sizes = [d.rng.choice(tuple(SIZES)) for _ in range(n)]
    background = d.rng.choice(tuple(BACKGROUNDS))
    said = [(s, c, sh) for s, (c, sh) in zip(sizes, pairs, strict=True)]
    if not match:
        other = looks(d, d.rng.randint(2, 3), want_heldout=False)
        if set(other) <= set(pairs):
            raise Retry
        said = [(d.rng.choice(tuple(SIZES)), c, sh) for c, sh in other]
    utt, seconds, _ = utterance(d, lambda rng: vocab.describe(rng, said, background), d.rng.uniform(0.2, 0.6), 10.0)
    duration = end_after(utt.onset + seconds, d)
    placed: list[Box] = []
    objects = [
        place(static_object(d, f"o{i}", p, 0.0, duration, size=s), placed)
        for i, (p, s) in enumerate(zip(pairs, sizes, strict=True))
    ]
    return {"duration": duration, "background": background, "objects": tuple(objects), "speech": (utt,),
            "tags": (*voice_tags(utt), *combo_tags(objects))}  # fmt: skip


MUSIC_QUESTIONS = ("clicks", "flash", "melody", "sounds")


def build_music(d: Draw) -> dict:
    question = MUSIC_QUESTIONS[d.plan.ordinal % len(MUSIC_QUESTIONS)]
    rng = d.rng
    ask = ""
    if question in ("clicks", "melody"):
        if question == "clicks":
            main = sound(d, "clicks", 0.0, 4.0, count=rng.randint(2, 8))
            others = ["tone", "chord", "noise", "melody"]
        else:
            main = sound(d, "melody", 0.0, 4.0, n_notes=rng.randint(3, 8))
            others = ["noise", "chord"]
        kinds = [rng.choice(others) for _ in range(rng.randint(0, 2))]
        kinds.insert(rng.randint(0, len(kinds)), "main")
        events, t = [], rng.uniform(0.3, 1.0)
        for kind in kinds:
            event = replace(main, onset=r2(t)) if kind == "main" else sound(d, kind, t)
            events.append(event)
            t = event.onset + event.duration + rng.uniform(0.3, 0.8)
        duration = end_after(t, d, (0.0, 0.5))
        objects = still_objects(d, looks(d, rng.randint(1, 3)), 0.0, duration, [])
        sounds = events
    elif question == "flash":
        n = rng.randint(2, 3)
        counts = [rng.randint(1, 5)] + [rng.randint(0, 3) for _ in range(n - 1)]
        objects, duration = flashing_scene(d, counts)
        ask = objects[0].id
        sounds = off_screen_sounds(d, duration)
        sounds = [s for s in sounds if all(abs(s.onset - t) >= SYNC_MISS for o in objects for t in o.flashes)]
    else:  # "sounds": how many of the asked object's flashes make a sound
        n = rng.randint(2, 3)
        counts = [rng.randint(2, 5)] + [rng.randint(1, 3) for _ in range(n - 1)]
        objects, duration = flashing_scene(d, counts)
        ask = objects[0].id
        sounds = []
        for o in objects:
            style = sound_style(d)
            heard = sorted(
                rng.sample(o.flashes, rng.randint(1, len(o.flashes)) if o.id == ask else rng.randint(0, len(o.flashes)))
            )
            sounds += [sound(d, onset=t, max_duration=FLASH_GAP - 0.4, source=o.id, **dict(style)) for t in heard]
        sounds.sort(key=lambda e: e.onset)
    tags = (f"question={question}", *([f"ask={ask}"] if ask else []), *combo_tags(objects))
    return {"duration": duration, "background": rng.choice(tuple(BACKGROUNDS)), "objects": tuple(objects),
            "sounds": tuple(sounds), "tags": tags}  # fmt: skip


BUILDERS: dict[str, Callable[[Draw], dict]] = {
    "asr": build_asr,
    "aac": build_aac,
    "ic": build_ic,
    "ocr": build_ocr,
    "vqa": build_vqa,
    "video-qa": build_video_qa,
    "avsr": build_avsr,
    "avqa-presentation": build_avqa,
    "avssd": build_avssd,
    "avm": build_avm,
    "music-avqa": build_music,
}


def tag(scene: Scene, key: str, default: str | None = None) -> str:
    """The value of the scene's "key=value" tag; `default` when it has none (KeyError if no default)."""
    prefix = key + "="
    for t in scene.tags:
        if t.startswith(prefix):
            return t[len(prefix) :]
    if default is None:
        raise KeyError(f"scene {scene.id} has no {key}= tag")
    return default
