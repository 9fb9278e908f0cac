"""SAVE-mini's world without rendering: determinism, the vocabulary, the split rules, every task's labels
recomputed here from the scene's own parameters, and the written manifests read back by the SAVE readers.

Speech length is faked (0.35 s per word), as world.build_scene allows; nothing is rendered.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path

import pytest

from videosalmonn.data.manifest import read_manifest
from videosalmonn.data.save import READERS
from videosalmonn.savemini import manifests, splits, tasks, vocab, world
from videosalmonn.savemini.scene import (
    COLOURS,
    FLASH_SECONDS,
    MIN_VISIBLE,
    SHAPES,
    SIZES,
    scene_from_dict,
    scene_to_dict,
)

SEED = 11
CYCLE = len(world.SCHEDULE)
N_TRAIN, N_VAL, N_TEST = 8 * CYCLE, 2 * CYCLE, 8 * CYCLE


def fake_seconds(utt) -> float:
    return 0.35 * len(utt.text.split())


@pytest.fixture(scope="module")
def scenes():
    return [world.build_scene(p, fake_seconds) for p in world.plan_world(SEED, N_TRAIN, N_VAL, N_TEST)]


@pytest.fixture(scope="module")
def samples(scenes):
    return [s for scene in scenes for s in tasks.build_samples(scene)]


@pytest.fixture(scope="module")
def written(samples, tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    info = manifests.write_manifests(out, samples, {"seed": SEED})
    return out, info


def split_of(scene) -> str:
    return world.tag(scene, "split")


def task_of(scene) -> str:
    return world.tag(scene, "task")


def by_name(scene, text: str):
    """The scene's object named "<colour> <shape>" somewhere in `text` (exactly one)."""
    found = [o for o in scene.objects if f"{o.colour} {o.shape}" in text]
    assert len(found) == 1, (scene.id, text)
    return found[0]


# ------------------------------------------------------------------------------------------- vocabulary


def test_vocabulary_has_500_words_in_disjoint_categories():
    assert len(vocab.WORDS) >= 500
    content = [vocab.NOUNS, vocab.ADJECTIVES, vocab.NAMES, vocab.PLACES, vocab.NUMBERS, vocab.ADVERBS]
    words = [w for group in content for w in group] + [v[0] for v in vocab.VERBS]
    assert len(words) >= 500
    assert not set(words) & (set(COLOURS) | set(SHAPES)), "colour and shape words belong to their own slots"
    assert all(re.fullmatch(r"[a-z]+", w) for w in vocab.WORDS)
    assert all(len(v) == 3 for v in vocab.VERBS)
    assert not set(vocab.OCR_WORDS) & {"a", "an", "the", "none", *vocab.NUMBER_WORDS}  # TextVQA rewrites those


def test_sentences_are_diverse_and_made_of_vocabulary_words():
    rng = random.Random(0)
    sentences = [vocab.sentence(rng) for _ in range(3000)]
    texts = [s.text for s in sentences]
    assert len(set(texts)) >= 2990
    used = {w for t in texts for w in t.split()}
    assert len(used) >= 500
    assert used <= vocab.WORDS
    assert all(re.fullmatch(r"[a-z]+( [a-z]+)*", t) for t in texts)
    assert all(s.key in s.text.split() for s in sentences)
    assert len({t.split()[0] for t in texts}) > 50  # not a handful of templates' openings


def test_sentences_about_the_screen_name_only_their_target():
    rng = random.Random(1)
    for _ in range(300):
        shape, colour = rng.choice(SHAPES), rng.choice(tuple(COLOURS))
        for text, word in (
            (vocab.mention_shape(rng, shape).text, shape),
            (vocab.mention_colour(rng, colour).text, colour),
        ):
            named = set(text.split()) & (set(COLOURS) | set(SHAPES))
            assert named == {word}, text
    looks = [("small", "red", "circle"), ("large", "blue", "star")]
    text = vocab.describe(rng, looks, "grey").text
    assert tasks.mentioned_looks(text) == {("red", "circle"), ("blue", "star")}


# ------------------------------------------------------------------------------------------- determinism


def test_plans_are_prefix_stable_and_balanced():
    short, long = world.plan_world(3, 20, 5, 20), world.plan_world(3, 200, 50, 16 * CYCLE)  # 32 AVM clips in test
    for split in splits.SPLITS:
        a = [p for p in short if p.split == split]
        b = [p for p in long if p.split == split]
        assert a == b[: len(a)]
    test = [p for p in long if p.split == "test"]
    counts = Counter(p.task for p in test)
    assert set(counts) == set(world.TASKS)
    avm = [p for p in test if p.task == "avm"]
    assert sum(p.avm_match for p in avm) == len(avm) // 2
    assert Counter(p.avm_group for p in avm) == {"vggss": len(avm) // 2, "spokencoco": len(avm) // 2}


def test_scenes_are_deterministic_and_independent_of_world_size(scenes):
    small = [world.build_scene(p, fake_seconds) for p in world.plan_world(SEED, CYCLE, CYCLE, CYCLE)]
    for scene in small:
        assert scene in scenes
    again = world.build_scene(world.plan_clip(SEED, "test", 5), fake_seconds)
    assert again == next(s for s in scenes if s.id == "test-000005")
    other = world.build_scene(world.plan_clip(SEED + 1, "test", 5), fake_seconds)
    assert other != again
    assert all(scene_from_dict(json.loads(json.dumps(scene_to_dict(s)))) == s for s in scenes)


def test_manifests_are_byte_identical_for_the_same_seed(samples, tmp_path):
    again = [
        s
        for p in world.plan_world(SEED, N_TRAIN, N_VAL, N_TEST)
        for s in tasks.build_samples(world.build_scene(p, fake_seconds))
    ]
    manifests.write_manifests(tmp_path / "a", samples, {"seed": SEED})
    manifests.write_manifests(tmp_path / "b", again, {"seed": SEED})
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) > 30
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files_a)


# ------------------------------------------------------------------------------------------- scene rules


def boxes_at(scene, t: float):
    """(x, y, half width, half height) of everything on screen at t, interpolated here."""
    out = []
    for o in scene.objects:
        if o.appear <= t < o.disappear:
            a = (t - o.appear) / (o.disappear - o.appear)
            r = SIZES[o.size] * (1 + a * (o.grow - 1))
            out.append((o.start[0] + a * (o.end[0] - o.start[0]), o.start[1] + a * (o.end[1] - o.start[1]), r, r))
    for text in scene.texts:
        if text.appear <= t < text.disappear:
            out.append((*text.position, *world.text_extent(text.text, text.height)))
    return out


def test_scenes_keep_the_world_rules(scenes):
    for scene in scenes:
        if scene.kind == "image":
            times = [0.0]
        else:
            assert world.MIN_CLIP <= scene.duration <= world.MAX_CLIP, scene.id
            times = [i * 0.05 for i in range(int(scene.duration / 0.05) + 1)]
        for t in times:
            boxes = boxes_at(scene, t)
            for i, (x, y, hx, hy) in enumerate(boxes):
                assert hx - 1e-9 <= x <= 1 - hx + 1e-9 and hy - 1e-9 <= y <= 1 - hy + 1e-9, (scene.id, t)
                for x2, y2, hx2, hy2 in boxes[i + 1 :]:
                    assert abs(x - x2) >= hx + hx2 or abs(y - y2) >= hy + hy2, (scene.id, t, "overlap")
        assert len({o.colour for o in scene.objects}) == len(scene.objects)
        assert len({o.shape for o in scene.objects}) == len(scene.objects)
        for thing in (*scene.objects, *scene.texts):
            assert thing.disappear - thing.appear >= MIN_VISIBLE, scene.id
        flashes = sorted(t for o in scene.objects for t in o.flashes)
        assert all(b - a >= world.FLASH_GAP - 1e-9 for a, b in zip(flashes, flashes[1:])), scene.id
        for o in scene.objects:
            assert all(o.appear <= t and t + FLASH_SECONDS <= o.disappear for t in o.flashes), scene.id
        events = sorted(scene.sounds, key=lambda e: e.onset)
        assert all(a.onset + a.duration <= b.onset + 1e-9 for a, b in zip(events, events[1:])), scene.id
        for e in scene.sounds:
            assert e.onset + e.duration <= scene.duration + 1e-9
            if e.source:
                assert e.onset in scene.object(e.source).flashes, scene.id
        for utt in scene.speech:
            assert utt.onset + fake_seconds(utt) <= scene.duration, scene.id


FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")


@pytest.mark.skipif(not FONT.is_file(), reason=f"{FONT} not installed (apt-get install fonts-dejavu-core)")
def test_text_boxes_bound_the_ink_frames_draws():
    from videosalmonn.savemini import frames
    from videosalmonn.savemini.scene import FRAME_SIZE, OnScreenText

    nouns = set(vocab.NOUNS) | {vocab.plural(n) for n in vocab.NOUNS}
    words = set(vocab.OCR_WORDS) | nouns | set(vocab.NAMES) | set(vocab.PLACES) | set(SHAPES) | {"8888", "1111"}
    for word in sorted(words):
        height = world.text_height(word)
        hx, hy = world.text_extent(word, height)
        assert 2 * hx <= world.TEXT_WIDTH + 1e-9
        x0, y0, x1, y1 = frames.text_box(OnScreenText(word, "red", 0.0, 1.0, (0.5, 0.5), height))
        assert x1 - x0 <= 2 * hx * FRAME_SIZE + 1 and y1 - y0 <= 2 * hy * FRAME_SIZE + 1, word


def test_clip_length_follows_the_speech():
    plan = world.plan_clip(SEED, "train", 0)
    assert plan.task == "asr"
    fast = world.build_scene(plan, lambda u: 0.2 * len(u.text.split()))
    slow = world.build_scene(plan, lambda u: 0.6 * len(u.text.split()))
    assert fast.speech[0].text == slow.speech[0].text
    assert slow.duration > fast.duration >= fast.speech[0].onset + 0.2 * len(fast.speech[0].text.split())


# ------------------------------------------------------------------------------------------- splits


def test_test_sentences_are_never_spoken_in_train(scenes):
    spoken = {split: {u.text for s in scenes if split_of(s) == split for u in s.speech} for split in splits.SPLITS}
    assert len(spoken["train"]) >= 30 and len(spoken["test"]) >= 30 and len(spoken["val"]) >= 5
    assert not spoken["test"] & spoken["train"] and not spoken["val"] & spoken["train"]
    for scene in scenes:
        for utt in scene.speech:
            assert splits.sentence_split(utt.text) == split_of(scene)
    rng = random.Random(5)  # the hash rule really splits: about 15 % of sentences are test sentences
    share = Counter(splits.sentence_split(vocab.sentence(rng).text) for _ in range(4000))
    assert 0.12 < share["test"] / 4000 < 0.18 and 0.03 < share["val"] / 4000 < 0.07


def test_heldout_voices_combos_and_motions_are_test_only(scenes):
    seen = {split: Counter() for split in splits.SPLITS}
    for scene in scenes:
        split = split_of(scene)
        for utt in scene.speech:
            assert utt.voice in splits.VOICES
            seen[split]["unseen-voice"] += splits.unseen_voice(utt.voice)
        for o in scene.objects:
            seen[split]["heldout-combo"] += (o.colour, o.shape) in splits.HELDOUT_COMBOS
            seen[split]["heldout-motion"] += any((o.shape, a) in splits.HELDOUT_MOTIONS for a in tasks.actions_of(o))
    for split in ("train", "val"):
        assert seen[split] == Counter(), split
    assert seen["test"]["unseen-voice"] > 10 and seen["test"]["heldout-combo"] > 10
    assert splits.unseen_voice("en-gb-x-gbcwmd+m1") and splits.unseen_voice("en-us+f4")
    assert not splits.unseen_voice("en-us+f3")


def test_heldout_motions_are_asked_in_test():
    action = [p for i in range(40 * CYCLE) if (p := world.plan_clip(SEED, "test", i)).task == "video-qa"]
    action = [p for p in action if world.VIDEO_QA_QUESTIONS[p.ordinal % 6] == "action"][:12]
    asked = []
    for plan in action:
        scene = world.build_scene(plan, fake_seconds)
        (s,) = tasks.build_samples(scene)
        x = by_name(scene, s.question)
        asked.append((x.shape, s.answer) in splits.HELDOUT_MOTIONS)
        assert asked[-1] == ("heldout-motion" in scene.tags)
    assert 2 <= sum(asked) <= 10  # about half


# ------------------------------------------------------------------------------------------- labels


def scene_of(scenes, sample):
    return next(s for s in scenes if s.id == sample.clip)


def eval_samples(samples, task):
    out = [s for s in samples if s.task == task and s.eval]
    assert out, task
    return out


def test_multiple_choice_options_are_four_distinct_with_the_answer(samples):
    for task in ("video-qa", "avqa-presentation"):
        for s in eval_samples(samples, task):
            assert len(s.candidates) == 4 and len(set(s.candidates)) == 4 and s.answer in s.candidates
            assert s.chance == 0.25


def test_video_qa_answers_follow_appear_times_and_motion(scenes, samples):
    kinds = Counter()
    for s in eval_samples(samples, "video-qa"):
        scene = scene_of(scenes, s)
        order = sorted(scene.objects, key=lambda o: o.appear)
        appears = [o.appear for o in order]
        q = s.question
        if not q.startswith("what did"):  # a question about order: appearances are ORDER_GAP apart
            assert all(b - a >= world.ORDER_GAP - 1e-9 for a, b in zip(appears, appears[1:]))
        if q.startswith("what appeared right"):
            x = by_name(scene, q)
            step = 1 if " after " in q else -1
            expected = order[order.index(x) + step]
        elif q.startswith("which shape appeared"):
            expected = order[0] if q.endswith("first") else order[-1]
        elif q == "which shape disappeared first":
            ends = sorted(o.disappear for o in scene.objects)
            assert ends[1] - ends[0] >= world.ORDER_GAP - 1e-9
            expected = min(scene.objects, key=lambda o: o.disappear)
        else:
            x = by_name(scene, q)
            dx, dy = x.end[0] - x.start[0], x.end[1] - x.start[1]
            moves = [m for m, ok in (("moved left", dx <= -0.2), ("moved right", dx >= 0.2), ("moved up", dy <= -0.2),
                                     ("moved down", dy >= 0.2), ("grew", x.grow >= 1.3), ("shrank", x.grow <= 0.75),
                                     ("flashed", bool(x.flashes))) if ok]  # fmt: skip
            assert len(moves) <= 1
            assert s.answer == (moves[0] if moves else "stayed still")
            others = [o for o in scene.objects if o is not x]
            assert all(len(tasks.actions_of(o)) == 1 for o in others)
            kinds["action"] += 1
            continue
        assert s.answer == f"the {expected.colour} {expected.shape}"
        kinds[q.split()[-1] if q.startswith("which") else "order"] += 1
        assert s.media == {"video": f"media/{scene.id}.mp4"} and not s.video_audio
    assert kinds["action"] and kinds["order"] and kinds["first"]


def test_avssd_source_is_the_object_flashing_with_the_sound(scenes, samples):
    for s in eval_samples(samples, "avssd"):
        scene = scene_of(scenes, s)
        onsets = {e.onset for e in scene.sounds}
        owners = [o for o in scene.objects if onsets <= set(o.flashes)]
        assert len(owners) == 1
        assert all(o.flashes for o in scene.objects), "every object flashes: flashing alone does not tell"
        assert s.answer == f"The source of this sound in this scene is the {owners[0].colour} {owners[0].shape}."


def test_avm_is_yes_iff_the_audio_belongs_to_the_scene(scenes, samples):
    answers = Counter()
    for s in eval_samples(samples, "avm"):
        scene = scene_of(scenes, s)
        if s.group == "vggss":
            onsets = sorted(e.onset for e in scene.sounds)
            flashes = sorted(t for o in scene.objects for t in o.flashes)
            belongs = onsets == flashes
            if not belongs:  # detectably wrong: no sound starts within SYNC_MISS of a flash
                assert all(abs(a - b) >= world.SYNC_MISS - 0.011 for a in onsets for b in flashes)
            assert set(s.media) == {"video", "audio"}
        else:
            words = scene.speech[0].text.split()
            named = {(a, b) for a, b in zip(words, words[1:]) if a in COLOURS and b in SHAPES}
            belongs = named == {(o.colour, o.shape) for o in scene.objects}
            if not belongs:
                assert named - {(o.colour, o.shape) for o in scene.objects}, "a named shape is not in the picture"
            assert set(s.media) == {"image", "audio"} and s.fields["text"] == scene.speech[0].text
        assert s.answer == ("Yes" if belongs else "No")
        answers[s.group, s.answer] += 1
    assert len(answers) == 4 and len(set(answers.values())) == 1, answers  # 50/50 in both groups


def test_counting_answers_equal_the_counts(scenes, samples):
    seen = Counter()
    for s in eval_samples(samples, "music-avqa"):
        scene = scene_of(scenes, s)
        q = s.question
        if q == "How many clicks do you hear?":
            n = sum(e.count for e in scene.sounds if e.kind == "clicks")
        elif q == "How many notes does the melody have?":
            n = sum(len(e.notes) for e in scene.sounds if e.kind == "melody")
        elif q.endswith("flash?"):
            n = len(by_name(scene, q).flashes)
        else:
            target = by_name(scene, q)
            n = sum(any(abs(e.onset - t) < 1e-9 for t in target.flashes) for e in scene.sounds)
        assert s.answer == str(n) and n >= 1
        seen[q.split()[2]] += 1
    assert len(seen) >= 3


def test_image_answers_follow_the_picture(scenes, samples):
    for s in eval_samples(samples, "vqa"):
        scene = scene_of(scenes, s)
        q = s.question
        if q.startswith("What colour is the background"):
            assert s.answer == scene.background
        elif q.startswith("What colour is the"):
            (o,) = [o for o in scene.objects if o.shape == q.split()[-1].rstrip("?")]
            assert s.answer == o.colour
        elif q.startswith("What shape"):
            (o,) = [o for o in scene.objects if o.colour == q.split()[4]]
            assert s.answer == o.shape
        elif q.startswith("How many"):
            assert s.answer == str(len(scene.objects))
        elif q.startswith("What size"):
            assert s.answer == by_name(scene, q).size
        else:
            a, b = sorted((o for o in scene.objects if f"{o.colour} {o.shape}" in q), key=lambda o: q.index(o.shape))
            assert s.answer == ("yes" if a.start[0] < b.start[0] else "no")
    for s in eval_samples(samples, "ocr"):
        scene = scene_of(scenes, s)
        assert s.references == (scene.texts[0].text,) * 10
    for s in eval_samples(samples, "ic"):
        scene = scene_of(scenes, s)
        assert len(set(s.references)) == 5
        assert all(o.shape in s.references[0] and o.colour in s.references[0] for o in scene.objects)


def test_speech_answers_are_what_was_said(scenes, samples):
    for s in eval_samples(samples, "asr"):
        assert s.references == (scene_of(scenes, s).speech[0].text.upper(),)
    for s in eval_samples(samples, "avsr"):
        scene = scene_of(scenes, s)
        assert s.answer == scene.speech[0].text
        noise = scene.noise_snr_db
        assert noise is not None and -5 <= noise <= 5
        (cue,) = scene.texts
        assert cue.text in scene.speech[0].text.split()
        assert cue.appear <= scene.speech[0].onset and cue.disappear >= scene.speech[0].onset + fake_seconds(
            scene.speech[0]
        )


def test_avqa_needs_the_speech_and_the_picture(scenes, samples):
    for s in eval_samples(samples, "avqa-presentation"):
        scene = scene_of(scenes, s)
        words = set(scene.speech[0].text.split())
        said = words & (set(COLOURS) | set(SHAPES))
        assert len(said) == 1
        (word,) = said
        (target,) = [o for o in scene.objects if word in (o.colour, o.shape)]
        if s.question.startswith("What colour"):
            assert s.answer == target.colour and set(s.candidates) == {o.colour for o in scene.objects}
        elif s.question.startswith("What shape"):
            assert s.answer == target.shape and set(s.candidates) == {o.shape for o in scene.objects}
        else:
            x, y = target.start
            side = ("on the left" if x < 0.5 else "on the right") if abs(x - 0.5) > abs(y - 0.5) else None
            assert s.answer == (side or ("at the top" if y < 0.5 else "at the bottom"))


def test_audio_captions_describe_the_events(scenes, samples):
    for s in eval_samples(samples, "aac"):
        scene = scene_of(scenes, s)
        assert len(s.references) == 5 and len(set(s.references)) >= 3
        for e in scene.sounds:
            if e.kind == "clicks":
                assert all(vocab.NUMBER_WORDS[e.count] in c.lower() for c in s.references)


# ------------------------------------------------------------------------------------------- manifests


def test_written_manifests_are_read_by_the_save_readers(written, samples):
    out, info = written
    assert set(info["eval"]) == set(world.TASKS)
    for task, where in info["eval"].items():
        read = READERS[task](out / where["manifest"], out / where["media_root"])
        expected = [s for s in samples if s.task == task and s.eval and s.split == "test"]
        assert len(read) == len(expected) == info["samples"]["test"][task]
        if task == "asr":
            read = sorted(read, key=lambda b: b.id)
            expected = sorted(expected, key=lambda s: s.id)
        for b, s in zip(read, expected, strict=True):
            assert b.references == s.references and b.prompt == s.prompt
            assert b.candidates == s.candidates
            paths = {k: out / v for k, v in s.media.items()}
            if task == "aac":  # the reader points at <id>.wav until the .flac is rendered
                paths["audio"] = out / "media" / f"{s.clip}.wav"
            assert {k: getattr(b, k) for k in ("video", "audio", "image") if getattr(b, k)} == paths, task
            if task == "avm":
                assert b.group == s.group


def media_kind(line) -> str:
    visual = "video" if line.video else "image" if line.image else ""
    return visual + ("+audio" if line.audio else "") + ("" if line.video_audio else "-only")


def test_training_manifests_mix_paired_and_unpaired_samples(written, samples):
    out, info = written
    lines = read_manifest(out / "train.jsonl")
    train = [s for s in samples if s.split == "train"]
    assert len(lines) == len(train) == info["training_lines"]["train"]
    kinds = Counter(media_kind(x) for x in lines)
    assert kinds["video-only"] > 0 and kinds["video+audio"] > 0 and kinds["image"] > 0
    assert kinds["image+audio"] > 0 and kinds["+audio"] > 0
    assert kinds["video"] > 0  # MUSIC-AVQA: a video with its own sound track
    extras = [s for s in train if not s.eval]
    assert {s.task for s in extras} == {"asr", "aac", "ic"}
    for line, s in zip(lines, train, strict=True):
        assert line.answer == s.answer and line.prompt_turns[0].text == s.prompt
    assert (out / "val.jsonl").is_file() and (out / "test.jsonl").is_file()


def test_world_json_gives_counts_and_chance_levels(written):
    out, info = written
    on_disk = json.loads((out / "world.json").read_text())
    assert on_disk == info and on_disk["seed"] == SEED
    assert on_disk["clips"] == {"train": N_TRAIN, "val": N_VAL, "test": N_TEST}
    chance = on_disk["chance"]
    assert chance["video-qa"]["random"] == 0.25 and chance["avqa-presentation"]["random"] == 0.25
    assert chance["avm"]["random"] == 0.5 and chance["avm"]["majority"] == 0.5
    assert 1 / 4 <= chance["avssd"]["random"] <= 1 / 3
    assert chance["asr"]["random"] is None and chance["asr"]["metric"] == "WER"


def test_media_files_name_what_each_layout_needs(scenes):
    for scene in scenes:
        files = manifests.media_files(scene)
        task = task_of(scene)
        if task == "asr":
            (path,) = files.values()
            assert re.fullmatch(rf"{split_of(scene)}/LibriSpeech/test-clean/\d+/\d+/\d+-\d+-\d+\.flac", path)
        elif scene.kind == "audio":
            assert files == {"audio": f"media/{scene.id}.flac"}
        elif scene.kind == "image":
            assert files["image"] == f"media/{scene.id}.jpg" and ("audio" in files) == bool(scene.speech)
        else:
            assert files["video"] == f"media/{scene.id}.mp4"
            assert ("audio" in files) == (task in {"avsr", "avqa-presentation", "avssd", "avm"})


def test_unknown_split_is_refused():
    with pytest.raises(ValueError, match="unknown split"):
        world.plan_clip(0, "dev", 0)
