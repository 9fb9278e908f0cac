"""SAVE-mini's tasks: a Scene -> its samples (question, answer, candidates, media), every label read from the
scene's own parameters (appear times, flashes, sound onsets, what was said), never from a rendering or a model.

    build_samples(scene) -> list[TaskSample]       deterministic: the wording and distractors come from
                                                   random.Random(f"{scene.id}/{scene.seed}/task")

The world tags each scene with its task and what to ask (world.py); the builders here compute the answer from
the scene itself (the tags only say which object is asked about), so tests can check every label against the
scene with their own code. What each task isolates, and its SAVE counterpart:

    asr          transcribe a sentence (LibriSpeech)                       speech
    aac          describe the sounds, 5 reference captions (AudioCaps)     non-speech audio
    ic           describe a picture, 5 captions (Flickr30k)                image
    ocr          read the word or number (TextVQA, 10 answers)             text in an image
    vqa          an attribute, a count or a relation (GQA)                 image
    video-qa     temporal order and actions over seconds, 4 options (NExT-QA); video only
    avsr         speech at -5..5 dB SNR, its key word written on screen (How2)
    avqa-presentation   what the speaker names + what is on screen, 4 options (Presentation-QA)
    avssd        which object flashes when the sound plays (VGGSS)         synchrony
    avm          does the audio belong to the video / the picture (VGGSS + SpokenCOCO groups), Yes/No
    music-avqa   counting clicks, notes, flashes, or an object's sounds (MUSIC-AVQA)

Training-only extras (train split): the unpaired views the paper's mixed training needs besides the
video-only (video-qa), image-only (ic, ocr, vqa) and audio-only (asr, aac) samples: the speech of AVSR and
AVQA clips as ASR, the spoken description of an AVM picture as ASR and the picture as IC, and the sounds of an
AVM video as AAC.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from videosalmonn.data.save import multiple_choice_prompt
from videosalmonn.data.save.audiocaps import PROMPT as AAC_PROMPT
from videosalmonn.data.save.librispeech import PROMPT as ASR_PROMPT
from videosalmonn.savemini import splits, vocab
from videosalmonn.savemini.manifests import TaskSample, librispeech_ids, media_files
from videosalmonn.savemini.scene import COLOURS, SHAPES, SIZES, Scene, SoundEvent, VisualObject
from videosalmonn.savemini.world import tag

IC_QUESTION = "Write a short description about this image."
AVSR_QUESTION = "Can you transcribe the speech into text, paying attention to the video?"
AVSSD_QUESTION = "What is the source of the sound?"
AVSSD_ANSWER = "The source of this sound in this scene is {}."
AVQA_WHERE = ("on the left", "on the right", "at the top", "at the bottom")
AVM_QUESTIONS = {  # SAVEBench's own questions
    "vggss": ("Is the audio compatible with the video?",),
    "spokencoco": (
        "Are the audio and the image about the same thing?",
        "Is the audio related to the image?",
        "Is the audio describing the image?",
    ),
}
ACTION_MOVE = 0.2  # a centre travelling this far (frame fraction) moved; world moves >= MOVE_MIN
ACTION_GROW, ACTION_SHRINK = 1.3, 0.75  # size ratios that count as grew / shrank (world: >= GROW_MIN, <= SHRINK_MAX)


def build_samples(scene: Scene) -> list[TaskSample]:
    task = tag(scene, "task")
    rng = random.Random(f"{scene.id}/{scene.seed}/task")
    return BUILDERS[task](scene, rng)


def sample(scene: Scene, task: str, question: str, answer: str, references=None, **kw) -> TaskSample:
    """A TaskSample of `scene` with its media; the prompt is the reader's (options listed for multiple choice)."""
    candidates = tuple(kw.pop("candidates", ()))
    prompt = kw.pop("prompt", None) or (multiple_choice_prompt(question, candidates) if candidates else question)
    media = kw.pop("media", None) or media_files(scene)
    return TaskSample(
        id=kw.pop("id", scene.id),
        task=task,
        split=tag(scene, "split"),
        clip=scene.id,
        prompt=prompt,
        question=question,
        answer=answer,
        references=tuple(references or (answer,)),
        media=media,
        candidates=candidates,
        **kw,
    )


# ----------------------------------------------------------------------------------------- labels


def actions_of(o: VisualObject) -> set[str]:
    """Every action of splits.ACTIONS the object's parameters show (the world gives each acting object one)."""
    dx, dy = o.end[0] - o.start[0], o.end[1] - o.start[1]
    found = set()
    if abs(dx) >= ACTION_MOVE:
        found.add("moved left" if dx < 0 else "moved right")
    if abs(dy) >= ACTION_MOVE:
        found.add("moved up" if dy < 0 else "moved down")  # y grows downwards
    if o.grow >= ACTION_GROW:
        found.add("grew")
    if o.grow <= ACTION_SHRINK:
        found.add("shrank")
    if o.flashes:
        found.add("flashed")
    return found or {"stayed still"}


def action_of(o: VisualObject) -> str:
    found = actions_of(o)
    if len(found) != 1:
        raise ValueError(f"object {o.id} does several things: {sorted(found)}")
    return found.pop()


def by_appearance(scene: Scene) -> list[VisualObject]:
    return sorted(scene.objects, key=lambda o: o.appear)


def flash_owner(scene: Scene, t: float) -> VisualObject | None:
    """The object with a flash starting at t, if any."""
    return next((o for o in scene.objects if t in o.flashes), None)


def synchronous(scene: Scene) -> bool:
    """Every sound starts with a flash and every flash has a sound."""
    onsets = {s.onset for s in scene.sounds}
    flashes = {t for o in scene.objects for t in o.flashes}
    return bool(onsets) and onsets == flashes


def sounding_object(scene: Scene) -> VisualObject:
    """The one object whose flashes coincide with the sounds (AVSSD)."""
    owners = {flash_owner(scene, s.onset) for s in scene.sounds}
    if len(owners) != 1 or None in owners:
        raise ValueError(f"scene {scene.id}: the sounds do not coincide with one object's flashes")
    return owners.pop()


def mentioned_looks(text: str) -> set[tuple[str, str]]:
    """The (colour, shape) pairs a sentence names ("a small red circle" -> ("red", "circle"))."""
    words = text.split()
    return {(a, b) for a, b in zip(words, words[1:]) if a in COLOURS and b in SHAPES}


def mentions(text: str, word: str) -> bool:
    return re.search(rf"\b{re.escape(word)}\b", text) is not None


def where(o: VisualObject) -> str:
    """AVQA_WHERE of an object in one of the left/right/top/bottom slots."""
    x, y = o.start
    if abs(x - 0.5) > abs(y - 0.5):
        return AVQA_WHERE[0] if x < 0.5 else AVQA_WHERE[1]
    return AVQA_WHERE[2] if y < 0.5 else AVQA_WHERE[3]


def count_word(n: int) -> str:
    return vocab.NUMBER_WORDS[n] if n < len(vocab.NUMBER_WORDS) else str(n)


def name(o: VisualObject) -> str:
    return f"{o.colour} {o.shape}"


def absent_names(scene: Scene, rng: random.Random, n: int) -> list[str]:
    """n "the <colour> <shape>" names of looks not in the scene (allowed in its split), as distractors."""
    split = tag(scene, "split")
    present = {(o.colour, o.shape) for o in scene.objects}
    pool = [
        f"the {c} {s}" for c in COLOURS for s in SHAPES if (c, s) not in present and splits.combo_allowed(c, s, split)
    ]
    return rng.sample(pool, n)


def options(answer: str, others: list[str], rng: random.Random, fill: Callable[[int], list[str]]) -> list[str]:
    """4 shuffled options: the answer, up to 3 of `others`, then `fill(k)` distractors."""
    others = [o for o in dict.fromkeys(others) if o != answer]
    picked = rng.sample(others, min(3, len(others)))
    picked += [f for f in fill(3 - len(picked))] if len(picked) < 3 else []
    out = [answer, *picked]
    rng.shuffle(out)
    return out


# ----------------------------------------------------------------------------------------- captions

TIMBRE_WORDS = {
    "sine": ("pure", "smooth"),
    "square": ("buzzy", "electronic"),
    "sawtooth": ("harsh", "brassy"),
    "triangle": ("soft", "mellow"),
    "bell": ("bell", "ringing"),
    "pluck": ("plucked", "twangy"),
    "organ": ("organ", "reedy"),
}
NOISE_WORDS = {
    "white": ("a burst of white noise", "a hiss", "a short hissing noise"),
    "pink": ("a rushing noise", "a soft whoosh", "a burst of rushing static"),
    "brown": ("a low rumble", "a rumbling noise", "a deep roar"),
}
CONNECTORS = (" then ", " followed by ", " and then ", ", after that ")
BACKGROUND_NOISE = (" over a steady hiss", " with noise in the background", " against background noise")


def register(note: int) -> str:
    return "low" if note < 58 else "high" if note > 72 else "medium"


def contour(notes: tuple[int, ...]) -> str:
    if list(notes) == sorted(notes):
        return "rising"
    if list(notes) == sorted(notes, reverse=True):
        return "falling"
    return "wavering"


def sound_phrases(e: SoundEvent) -> list[str]:
    """Ways to name one sound event in a caption."""
    t1, t2 = TIMBRE_WORDS[e.timbre]
    if e.kind == "tone":
        p = register(e.notes[0])
        length = "short " if e.duration < 0.6 else "long " if e.duration > 1.0 else ""
        return [f"a {length}{p} {t1} tone", f"a {t2} note at a {p} pitch", f"one {p} pitched {t1} note"]
    if e.kind == "chord":
        mode = "minor" if e.notes[1] - e.notes[0] == 3 else "major"
        return [f"a {t1} chord", f"a {mode} chord on a {t2} instrument", f"three {t1} notes played together"]
    if e.kind == "noise":
        return list(NOISE_WORDS[e.noise])
    if e.kind == "clicks":
        n = count_word(e.count)
        return [f"{n} clicks", f"{n} quick clicks", f"a clicking sound {n} times", f"{n} sharp ticks"]
    n, shape = count_word(len(e.notes)), contour(e.notes)
    going = {"rising": "going up", "falling": "going down", "wavering": "going up and down"}[shape]
    return [f"a {shape} melody of {n} notes", f"{n} {t1} notes {going}", f"a short {t2} tune {going}"]


def audio_captions(scene: Scene, rng: random.Random, n: int = 5) -> list[str]:
    """n differently worded captions of the scene's sounds, in time order (and its background noise)."""
    events = sorted(scene.sounds, key=lambda e: e.onset)
    captions: list[str] = []
    for _ in range(50 * n):
        parts = [rng.choice(sound_phrases(e)) for e in events]
        text = parts[0]
        for part in parts[1:]:
            text += rng.choice(CONNECTORS) + part
        if scene.noise_snr_db is not None:
            text += rng.choice(BACKGROUND_NOISE)
        text = text[0].upper() + text[1:]
        if text not in captions:
            captions.append(text)
        if len(captions) == n:
            break
    while len(captions) < n:  # a single short event has fewer wordings than n
        captions.append(captions[len(captions) % max(1, len(captions))])
    return captions


def position(o: VisualObject) -> str:
    x, y = o.start
    horizontal = "on the left" if x < 0.35 else "on the right" if x > 0.65 else ""
    vertical = "at the top" if y < 0.35 else "at the bottom" if y > 0.65 else ""
    if horizontal and vertical:
        return f"{vertical} {horizontal.replace('on the ', '')}"  # "at the top left"
    return horizontal or vertical or "in the middle"


def listing(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def image_captions(scene: Scene, rng: random.Random) -> list[str]:
    """5 captions of a still picture, worded differently."""
    objects = sorted(scene.objects, key=lambda o: o.start[0])  # left to right
    bg = scene.background
    plain = [vocab.with_article(name(o)) for o in objects]
    sized = [vocab.with_article(f"{o.size} {name(o)}") for o in objects]
    placed = [f"{p} {position(o)}" for p, o in zip(plain, objects, strict=True)]
    n = len(objects)
    captions = [
        f"{listing(plain)} on a {bg} background",
        f"A {bg} background with {listing(sized)}",
        listing(placed),
        f"{count_word(n).capitalize()} shape{'s' if n > 1 else ''} on {vocab.with_article(bg)} background",
    ]
    if n >= 2:
        a, b = rng.sample(objects, 2)
        side = "to the left of" if a.start[0] < b.start[0] else "to the right of"
        captions.append(f"{plain[objects.index(a)]} {side} {plain[objects.index(b)]}")
    else:
        captions.append(f"A single {name(objects[0])} {position(objects[0])}")
    return [c[0].upper() + c[1:] for c in captions]


# ------------------------------------------------------------------------------------------- builders


def asr(scene: Scene, rng: random.Random) -> list[TaskSample]:
    speaker, chapter, utt = librispeech_ids(scene)
    text = scene.speech[0].text
    fields = {"speaker": speaker, "chapter": chapter, "utt_id": utt}
    return [sample(scene, "asr", ASR_PROMPT, text, (text.upper(),), prompt=ASR_PROMPT, id=utt, fields=fields)]


def aac(scene: Scene, rng: random.Random) -> list[TaskSample]:
    captions = audio_captions(scene, rng)
    return [sample(scene, "aac", AAC_PROMPT, captions[0], captions, prompt=AAC_PROMPT)]


def ic(scene: Scene, rng: random.Random) -> list[TaskSample]:
    captions = image_captions(scene, rng)
    return [sample(scene, "ic", IC_QUESTION, captions[0], captions)]


def ocr(scene: Scene, rng: random.Random) -> list[TaskSample]:
    text = scene.texts[0].text
    what = "number" if text.isdigit() else "word"
    return [sample(scene, "ocr", f"what {what} is written on the screen?", text, [text] * 10)]


def vqa(scene: Scene, rng: random.Random) -> list[TaskSample]:
    question = tag(scene, "question")
    ask = [scene.object(i) for i in tag(scene, "ask", "").split(",") if i]
    if question == "colour":
        o = ask[0]
        q, a, full, chance = (
            f"What colour is the {o.shape}?",
            o.colour,
            f"The {o.shape} is {o.colour}.",
            1 / len(COLOURS),
        )
    elif question == "shape":
        o = ask[0]
        q, a, full, chance = f"What shape is the {o.colour} object?", o.shape, f"It is a {o.shape}.", 1 / len(SHAPES)
    elif question == "count":
        n = len(scene.objects)
        q, a, full, chance = "How many shapes are there?", str(n), f"There are {count_word(n)} shapes.", 1 / 4
    elif question == "size":
        o = ask[0]
        q, a, full, chance = f"What size is the {name(o)}?", o.size, f"The {name(o)} is {o.size}.", 1 / len(SIZES)
    elif question == "left-of":
        a_obj, b_obj = ask
        yes = a_obj.start[0] < b_obj.start[0]
        q = f"Is the {name(a_obj)} to the left of the {name(b_obj)}?"
        a = "yes" if yes else "no"
        full, chance = f"{'Yes' if yes else 'No'}, it is to the {'left' if yes else 'right'}.", 1 / 2
    else:
        q, a, chance = "What colour is the background?", scene.background, 1 / 4
        full = f"The background is {scene.background}."
    return [sample(scene, "vqa", q, a, chance=chance, fields={"fullanswer": full})]


def video_qa(scene: Scene, rng: random.Random) -> list[TaskSample]:
    question = tag(scene, "question")
    order = by_appearance(scene)
    names = [f"the {name(o)}" for o in order]
    fill = lambda k: absent_names(scene, rng, k)  # noqa: E731
    if question in ("after", "before"):
        x = scene.object(tag(scene, "ask"))
        i = order.index(x)
        answer = names[i + 1] if question == "after" else names[i - 1]
        q = f"what appeared right {question} the {name(x)}"
        others = [n for n in names if n not in (answer, names[i])]
    elif question in ("first", "last"):
        answer = names[0] if question == "first" else names[-1]
        q, others = f"which shape appeared {question}", names
    elif question == "vanished-first":
        answer = f"the {name(min(scene.objects, key=lambda o: o.disappear))}"
        q, others = "which shape disappeared first", names
    else:  # action
        x = scene.object(tag(scene, "ask"))
        answer, q = action_of(x), f"what did the {name(x)} do"
        others = [action_of(o) for o in scene.objects if o is not x]
        fill = lambda k: rng.sample([a for a in splits.ACTIONS if a not in others and a != answer], k)  # noqa: E731
    candidates = options(answer, others, rng, fill)
    media = {"video": media_files(scene)["video"]}
    return [sample(scene, "video-qa", q, answer, candidates=candidates, chance=1 / 4, media=media, video_audio=False)]


def avsr(scene: Scene, rng: random.Random) -> list[TaskSample]:
    text = scene.speech[0].text
    out = [sample(scene, "avsr", AVSR_QUESTION, text)]
    return out + speech_extra(scene)


def avqa(scene: Scene, rng: random.Random) -> list[TaskSample]:
    question = tag(scene, "question")
    target = scene.object(tag(scene, "ask"))
    said = scene.speech[0].text
    if question == "shape-of-colour":
        if not mentions(said, target.colour):
            raise ValueError(f"scene {scene.id}: the speech does not name {target.colour}")
        q, answer = "What shape is the object whose colour the speaker says?", target.shape
        candidates = [o.shape for o in scene.objects]
    else:
        if not mentions(said, target.shape):
            raise ValueError(f"scene {scene.id}: the speech does not name {target.shape}")
        if question == "colour-of-shape":
            q, answer = "What colour is the shape the speaker mentions?", target.colour
            candidates = [o.colour for o in scene.objects]
        else:
            q, answer, candidates = "Where is the shape the speaker mentions?", where(target), list(AVQA_WHERE)
    rng.shuffle(candidates)
    out = [sample(scene, "avqa-presentation", q, answer, candidates=candidates, chance=1 / len(candidates))]
    return out + speech_extra(scene)


def avssd(scene: Scene, rng: random.Random) -> list[TaskSample]:
    source = sounding_object(scene)
    answer = AVSSD_ANSWER.format(f"the {name(source)}")
    return [sample(scene, "avssd", AVSSD_QUESTION, answer, chance=1 / len(scene.objects))]


def avm(scene: Scene, rng: random.Random) -> list[TaskSample]:
    group = tag(scene, "group")
    split = tag(scene, "split")
    if group == "vggss":
        match = synchronous(scene)
        text = audio_captions(scene, rng, 1)[0]
    else:
        said = scene.speech[0].text
        match = mentioned_looks(said) == {(o.colour, o.shape) for o in scene.objects}
        text = said
    if match != (tag(scene, "avm") == "yes"):
        raise ValueError(f"scene {scene.id}: AVM label {tag(scene, 'avm')} does not follow from the scene")
    question = rng.choice(AVM_QUESTIONS[group])
    answer = "Yes" if match else "No"
    out = [sample(scene, "avm", question, answer, group=group, chance=1 / 2, fields={"text": text})]
    if split != "train":
        return out
    files = media_files(scene)
    if group == "vggss":
        captions = audio_captions(scene, rng)
        media = {"audio": files["audio"]}
        return out + [sample(scene, "aac", AAC_PROMPT, captions[0], captions, prompt=AAC_PROMPT, media=media,
                             id=f"{scene.id}-aac", eval=False)]  # fmt: skip
    captions = image_captions(scene, rng)
    image = sample(scene, "ic", IC_QUESTION, captions[0], captions, media={"image": files["image"]},
                   id=f"{scene.id}-ic", eval=False)  # fmt: skip
    return [*out, image, *speech_extra(scene)]


MUSIC = {  # question type -> (question_content, MUSIC-AVQA type)
    "clicks": ("How many clicks do you hear?", ["Audio", "Counting"]),
    "flash": ("How many times does the <Object> flash?", ["Visual", "Counting"]),
    "melody": ("How many notes does the melody have?", ["Audio", "Counting"]),
    "sounds": ("How many sounds does the <Object> make?", ["Audio-Visual", "Counting"]),
}


def music_avqa(scene: Scene, rng: random.Random) -> list[TaskSample]:
    question = tag(scene, "question")
    content, kind = MUSIC[question]
    values: list[str] = []
    if question == "clicks":
        count, chance = sum(e.count for e in scene.sounds if e.kind == "clicks"), 1 / 7
    elif question == "melody":
        (melody,) = [e for e in scene.sounds if e.kind == "melody"]
        count, chance = len(melody.notes), 1 / 6
    else:
        o = scene.object(tag(scene, "ask"))
        values = [name(o)]
        if question == "flash":
            count, chance = len(o.flashes), 1 / 5
        else:
            count, chance = sum(1 for e in scene.sounds if e.onset in o.flashes), 1 / len(o.flashes)
    text = content.replace("<Object>", values[0]) if values else content
    fields = {"question_id": clip_number(scene), "question_content": content, "templ_values": values,
              "type": kind}  # fmt: skip
    media = {"video": media_files(scene)["video"]}
    return [sample(scene, "music-avqa", text, str(count), media=media, group=kind[0], chance=chance, fields=fields)]


def clip_number(scene: Scene) -> int:
    return int(scene.id.rsplit("-", 1)[1])


def speech_extra(scene: Scene) -> list[TaskSample]:
    """Train split: the clip's speech alone as an ASR sample (audio-only, unpaired)."""
    if tag(scene, "split") != "train":
        return []
    text = scene.speech[0].text
    media = {"audio": media_files(scene)["audio"]}
    return [sample(scene, "asr", ASR_PROMPT, text, prompt=ASR_PROMPT, media=media, id=f"{scene.id}-asr", eval=False)]


BUILDERS: dict[str, Callable[[Scene, random.Random], list[TaskSample]]] = {
    "asr": asr,
    "aac": aac,
    "ic": ic,
    "ocr": ocr,
    "vqa": vqa,
    "video-qa": video_qa,
    "avsr": avsr,
    "avqa-presentation": avqa,
    "avssd": avssd,
    "avm": avm,
    "music-avqa": music_avqa,
}
