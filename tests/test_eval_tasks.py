"""SAVE tasks: manifest readers on the real SAVEBench files, fake LibriSpeech/AudioCaps/MUSIC-AVQA layouts,
multiple-choice prompts, and per-task scoring of hand-made predictions."""

import json
from pathlib import Path

import pytest
from conftest import SHARED

from videosalmonn.data.save import (
    READERS,
    BenchmarkSample,
    audiocaps,
    avsd,
    gqa,
    librispeech,
    multiple_choice_prompt,
    music_avqa,
    textvqa,
)
from videosalmonn.data.save.common import seeded_subset
from videosalmonn.errors import InputError
from videosalmonn.evaluation.tasks import TASKS, vggss

SAVEBENCH = SHARED / "savebench"
needs_savebench = pytest.mark.skipif(not SAVEBENCH.is_dir(), reason=f"SAVEBench manifests not found at {SAVEBENCH}")
MEDIA = Path("/media-root")

# task -> samples read (after the seeded 1k subset where Table 1 uses one), manifest entries
COUNTS = {
    "avm": (1000, 1000),
    "avsd": (500, 500),
    "avqa-ego4d": (899, 899),
    "avqa-presentation": (963, 963),
    "avsr": (531, 531),
    "video-qa": (1000, 1000),
    "avssd": (847, 847),
    "ic": (1000, 1000),
    "ocr": (1000, 5000),
    "vqa": (1000, 12577),
}


def read(name: str, **kwargs) -> list[BenchmarkSample]:
    task = TASKS[name]
    return task.read(SAVEBENCH / task.default_manifest, MEDIA, **kwargs)


def test_tasks_read_with_the_data_readers():
    """One reader per task, shared by evaluation and training (data/save/)."""
    assert set(READERS) == set(TASKS) and all(TASKS[n].read is READERS[n] for n in TASKS)


def test_registry():
    assert set(TASKS) == {
        "asr",
        "aac",
        "ic",
        "ocr",
        "vqa",
        "video-qa",
        "avsr",
        "avqa-ego4d",
        "avqa-presentation",
        "avssd",
        "avm",
        "avsd",
        "music-avqa",
        "lrs2",
    }
    paper = {name: task.paper_value for name, task in TASKS.items()}
    assert paper == {
        "asr": 0.026,
        "aac": 0.497,
        "ic": 0.896,
        "ocr": 0.378,
        "vqa": 0.448,
        "video-qa": 0.496,
        "avsr": 0.077,
        "avqa-ego4d": 0.498,
        "avqa-presentation": 0.705,
        "avssd": 0.476,
        "avm": 0.797,
        "avsd": None,
        "music-avqa": 0.526,
        "lrs2": 0.049,
    }
    assert {n for n, t in TASKS.items() if t.default_manifest is None} == {"asr", "aac", "music-avqa", "lrs2"}
    assert {n for n, t in TASKS.items() if t.lower_is_better} == {"asr", "avsr", "lrs2"}
    assert all(t.source for t in TASKS.values())


@needs_savebench
@pytest.mark.parametrize("name", sorted(COUNTS))
def test_savebench_counts_and_fields(name):
    samples = read(name)
    assert len(samples) == COUNTS[name][0]
    assert len({s.id for s in samples}) == len(samples)
    for s in samples:
        assert s.prompt and s.references and all(isinstance(r, str) for r in s.references)
        assert any(p is not None for p in (s.video, s.audio, s.image))
        assert all(p is None or p.is_relative_to(MEDIA) for p in (s.video, s.audio, s.image))


@needs_savebench
@pytest.mark.parametrize("module, name", [(textvqa, "ocr"), (gqa, "vqa")])
def test_fixed_seed_subsets(module, name):
    manifest = SAVEBENCH / TASKS[name].default_manifest
    full = module.read(manifest, MEDIA, subset=None)
    assert len(full) == COUNTS[name][1]
    first, again = module.read(manifest, MEDIA), module.read(manifest, MEDIA)
    assert [s.id for s in first] == [s.id for s in again]  # same seed, same subset
    assert [s.id for s in first] == sorted(s.id for s in first)  # manifest order
    assert [s.id for s in first] != [s.id for s in module.read(manifest, MEDIA, seed=1)]
    by_id = {s.id: s for s in full}
    assert all(by_id[s.id] == s for s in first)  # ids keep the manifest index
    assert seeded_subset(10, 3) == seeded_subset(10, 3) and seeded_subset(5, None) == [0, 1, 2, 3, 4]


@needs_savebench
def test_savebench_layouts():
    avm = read("avm")
    assert sum(s.group == "vggss" for s in avm) == 500 and sum(s.group == "spokencoco" for s in avm) == 500
    assert all(s.video and s.audio and not s.image for s in avm if s.group == "vggss")
    assert all(s.image and s.audio and not s.video for s in avm if s.group == "spokencoco")
    assert {s.references for s in avm} == {("Yes",), ("No",)}

    nextqa = read("video-qa")
    assert all(s.video and s.audio is None and len(s.candidates) == 5 for s in nextqa)
    assert nextqa[0].video == MEDIA / "1101/2574374895.mp4"

    ego = read("avqa-ego4d")
    assert ego[0].span == pytest.approx((500.8864412879968, 519.1272512879968))
    assert all(s.span and 0 < s.span[1] - s.span[0] <= 30 for s in ego)
    assert all(s.span is None and s.video and s.audio for s in read("avqa-presentation"))

    assert len(read("ocr")[0].references) == 10 and len(read("ic")[0].references) == 5
    how2 = read("avsr")
    assert how2[0].video == MEDIA / "-fZc293MpJk_3.33_3.68.mp4" and how2[0].references == ("Hi!",)
    assert all(s.video.suffix == ".mp4" and s.audio.suffix == ".wav" for s in read("avssd"))


@needs_savebench
def test_avsd_turns():
    last = read("avsd")
    assert last[0].id == "avsd-000-t09" and len(last[0].history) == 9
    assert last[0].history[0] == ("Is this a man or a woman?", "The person is a man.")
    assert last[0].prompt == "Is there any other audio?"
    assert last[0].video == MEDIA / "Charades_v1_480/Y4U6T.mp4" and last[0].audio == MEDIA / "audios/Y4U6T.wav"
    every = avsd.read(SAVEBENCH / avsd.MANIFEST, MEDIA, all_turns=True)
    assert len(every) == 494 * 10 + 5 * 9 + 7
    assert every[0].history == () and len(every[1].history) == 1


# ----------------------------------------------------------------------------------------------------------
# Prompts


def test_multiple_choice_prompt_golden():
    prompt = multiple_choice_prompt(
        "why is the man pointing at something ", ["direct attention", "making a speech", "play game"]
    )
    assert prompt == (
        "why is the man pointing at something\nChoose one from:\ndirect attention\nmaking a speech\nplay game"
    )
    with pytest.raises(InputError):
        multiple_choice_prompt("q", ["only one"])


@needs_savebench
def test_multiple_choice_samples_prompt_with_their_options():
    sample = read("avqa-ego4d")[0]
    assert sample.prompt == multiple_choice_prompt(sample.question, sample.candidates)
    assert sample.prompt.splitlines()[2:] == list(sample.candidates)
    assert sample.references[0] in sample.candidates


# ----------------------------------------------------------------------------------------------------------
# Fake dataset layouts


def fake_librispeech(root: Path) -> Path:
    chapter = root / "LibriSpeech" / "test-clean" / "1089" / "134686"
    chapter.mkdir(parents=True)
    (chapter / "1089-134686.trans.txt").write_text(
        "1089-134686-0000 HE HOPED THERE WOULD BE STEW FOR DINNER\n1089-134686-0001 STUFF IT INTO YOU\n"
    )
    return root / "LibriSpeech"


def test_librispeech_layout(tmp_path):
    root = fake_librispeech(tmp_path)
    samples = librispeech.read(root)
    assert samples == librispeech.read(root / "test-clean")
    assert [s.id for s in samples] == ["1089-134686-0000", "1089-134686-0001"]
    assert samples[0].audio == root / "test-clean/1089/134686/1089-134686-0000.flac"
    assert samples[0].prompt == "Transcribe the speech into text." and samples[1].references == ("STUFF IT INTO YOU",)
    task = TASKS["asr"]
    predictions = ["He hoped there would be stew for dinner.", "stuff it in to you"]  # 1 sub + 1 ins in 4 words
    assert task.score(samples[0], predictions[0]) == 0.0
    assert task.score(samples[1], predictions[1]) == pytest.approx(2 / 4)
    [result] = task.aggregate(samples, predictions)
    assert result.name == "WER" and result.value == pytest.approx(2 / 12)
    assert result.details["ci95_low"] <= result.value <= result.details["ci95_high"]
    with pytest.raises(InputError):
        librispeech.read(tmp_path / "nowhere")


def test_audiocaps_layout(tmp_path):
    rows = [
        "audiocap_id,youtube_id,start_time,caption",
        "1,abc,30,A dog barks.",
        "2,abc,30,A dog is barking loudly.",
        "3,xyz,0,Rain falls on a roof.",
        "4,xyz,0,Heavy rain and thunder.",
    ]
    (tmp_path / "test.csv").write_text("\n".join(rows) + "\n")
    audio = tmp_path / "audio"
    audio.mkdir()
    (audio / "Yabc.flac").write_bytes(b"")
    samples = audiocaps.read(tmp_path / "test.csv", audio)
    assert [s.id for s in samples] == ["abc_30", "xyz_0"]
    assert samples[0].references == ("A dog barks.", "A dog is barking loudly.")
    assert samples[0].audio == audio / "Yabc.flac"  # an existing accepted name
    assert samples[1].audio == audio / "xyz.wav"  # none exists: the default name
    assert samples[0].prompt == "Please describe the audio."
    task = TASKS["aac"]
    assert task.score(samples[0], "a dog barks") is None  # corpus metric
    spider, cider, spice = task.aggregate(samples, ["A dog barks.", "Rain falls."])
    assert cider.name == "CIDEr-D" and cider.value > 0
    assert spice.available == (spice.value is not None) and spider.available == spice.available
    (tmp_path / "bad.csv").write_text("youtube_id,caption\nabc,x\n")
    with pytest.raises(InputError, match="start_time"):
        audiocaps.read(tmp_path / "bad.csv")


def test_music_avqa_layout(tmp_path):
    entries = [
        {
            "video_id": "00000272",
            "question_id": 50,
            "type": '["Audio-Visual", "Temporal"]',
            "question_content": "Where is the <FL> sounding instrument?",
            "templ_values": '["first"]',
            "question_deleted": 0,
            "anser": "left",
        },
        {
            "video_id": "00000259",
            "question_id": 157,
            "type": '["Audio", "Counting"]',
            "question_content": "How many <Object> are in the entire video?",
            "templ_values": '["instruments"]',
            "question_deleted": 0,
            "anser": "two",
        },
        {
            "video_id": "00000001",
            "question_id": 3,
            "type": '["Visual", "Existential"]',
            "question_content": "Is there a <Object> in the video?",
            "templ_values": '["cello"]',
            "question_deleted": 1,
            "anser": "yes",
        },
    ]
    (tmp_path / "avqa-test.json").write_text(json.dumps(entries))
    samples = music_avqa.read(tmp_path / "avqa-test.json", tmp_path / "videos")
    assert [s.prompt for s in samples] == [
        "Where is the first sounding instrument?",
        "How many instruments are in the entire video?",
    ]
    assert samples[0].video == tmp_path / "videos/00000272.mp4" and samples[0].audio is None
    task = TASKS["music-avqa"]
    assert task.score(samples[0], "It is on the left.") == 1.0 and task.score(samples[1], "2") == 1.0
    overall, *groups = task.aggregate(samples, ["right", "There are two."])
    assert overall.value == 0.5 and [g.name for g in groups] == ["accuracy [Audio]", "accuracy [Audio-Visual]"]
    with pytest.raises(InputError):
        music_avqa.render_question("<A> and <B>", ["x"])


# ----------------------------------------------------------------------------------------------------------
# Per-task scoring on hand-made predictions


@needs_savebench
def test_choice_tasks_score():
    task, samples = TASKS["video-qa"], read("video-qa")[:3]
    assert task.score(samples[0], "lay on floor") == 1.0
    assert task.score(samples[0], "crawl") == 0.0
    predictions = ["lay on floor", "crawl", samples[2].references[0]]
    [result] = task.aggregate(samples, predictions)
    assert result.value == pytest.approx(2 / 3) and result.per_sample == (1.0, 0.0, 1.0)
    assert result.details["ci95_low"] <= result.value <= result.details["ci95_high"]
    [again] = task.aggregate(samples, ["x", "x", "x"], scores=[1.0, 0.0, 1.0])  # resumed scores are used
    assert again.value == pytest.approx(2 / 3)
    with pytest.raises(InputError):
        task.aggregate(samples, predictions[:2])


@needs_savebench
def test_open_answer_tasks_score():
    ocr = read("ocr")[0]
    best = max(set(ocr.references), key=ocr.references.count)
    assert TASKS["ocr"].score(ocr, best) > 0.5 and TASKS["ocr"].score(ocr, "zzz") == 0.0
    vqa = next(s for s in read("vqa") if s.references == ("no",))
    assert TASKS["vqa"].score(vqa, "No, it is not.") == 1.0 and TASKS["vqa"].score(vqa, "yes or no") == 0.0


@needs_savebench
def test_avm_scores_per_group():
    samples = read("avm")
    predictions = [s.references[0] if s.group == "vggss" else "Maybe" for s in samples]
    overall, *groups = TASKS["avm"].aggregate(samples, predictions)
    assert overall.value == pytest.approx(0.5)
    assert {g.name: g.value for g in groups} == {"accuracy [spokencoco]": 0.0, "accuracy [vggss]": 1.0}


@needs_savebench
def test_avssd_fallback_and_llm_judge():
    samples = read("avssd")[:2]
    fallback = TASKS["avssd"]
    assert fallback.score(samples[0], "People are belly laughing.") == 1.0
    [result] = fallback.aggregate(samples, ["People are belly laughing.", "A car engine."])
    assert result.value == 0.5 and "fallback" in result.name

    prompts = []

    def client(messages):
        prompts.append(messages[0]["content"])
        return "Yes."

    judged = vggss.with_judge(client)
    [result] = judged.aggregate(samples, ["laughter", "music"])
    assert result.value == 1.0 and "LLM judge" in result.name and len(prompts) == 2
    assert prompts[0].startswith(f'Is the sound source mentioned in answer "{samples[0].references[0]}"')
    assert judged.name == "avssd" and judged.paper_value == fallback.paper_value


@needs_savebench
def test_caption_and_wer_tasks_aggregate():
    ic = read("ic")[:4]
    assert TASKS["ic"].score(ic[0], "a couple") is None
    [cider] = TASKS["ic"].aggregate(ic, [s.references[0] for s in ic])
    assert cider.name == "CIDEr-D" and cider.value > 1.0 and len(cider.per_sample) == 4
    dialogues = read("avsd")[:3]
    [cider] = TASKS["avsd"].aggregate(dialogues, ["yes", "no", dialogues[2].references[0]])
    assert cider.per_sample[2] > cider.per_sample[0]
    how2 = read("avsr")[:2]
    [result] = TASKS["avsr"].aggregate(how2, [s.references[0] for s in how2])
    assert result.value == 0.0 and TASKS["avsr"].score(how2[0], "hi") == 0.0
