"""The mixed unpaired audio-visual training rules (spec §5.2): deterministic under a seed, official frequencies,
exact prompt formats, index pairing, and the instruction set the feature cache must hold."""

from collections import Counter

import pytest

from videosalmonn.errors import InputError
from videosalmonn.training.config import MixingConfig
from videosalmonn.training.data import DataOrder
from videosalmonn.training.mixing import (
    AVM_QUESTIONS,
    Item,
    MediaRef,
    Pools,
    check_prompt_keys,
    instruction_variants,
    mix,
)
from videosalmonn.types import Turn

POOL = {"asr": ("Transcribe the speech.", "Write down what is said.")}


def qa(q, a):
    return (Turn("user", q), Turn("assistant", a))


ITEMS = [
    Item(
        "v+a",
        "m:1",
        qa("Describe the video.", "A band plays."),
        MediaRef("v.mp4", 0, 4),
        False,
        MediaRef("v.wav", 0, 4),
    ),
    Item("v", "m:2", qa("What happens?", "A man sings."), MediaRef("v.mp4"), False, None),
    Item(
        "i+a",
        "m:3",
        qa("Does the speech match the image?", "audio_text_matching"),
        MediaRef("c.jpg"),
        True,
        MediaRef("s1.wav"),
    ),
    Item(
        "i+a2",
        "m:4",
        qa("Does the speech match the image?", "audio_text_matching"),
        MediaRef("d.jpg"),
        True,
        MediaRef("s2.wav"),
    ),
    Item("i", "m:5", qa("What is the title?", "A Calendar."), MediaRef("c.jpg"), True, None),
    Item("a1", "m:6", qa("<asr>", "Hello world."), None, False, MediaRef("a1.flac")),
    Item("a2", "m:7", qa("Describe the audio.", "Applause."), None, False, MediaRef("a2.wav")),
    Item("v-multi", "m:8", qa("Where?", "On a stage.") + qa("Who?", "A band."), MediaRef("v.mp4"), False, None),
]
POOLS = Pools.of(ITEMS)
CFG = MixingConfig()


def draws(index, epochs=2000, cfg=CFG, seed=0):
    return [mix(ITEMS, POOLS, index, e, seed, cfg, POOL) for e in range(epochs)]


def test_pools_and_kinds():
    assert [x.kind for x in ITEMS] == [
        "video+audio",
        "video",
        "image+audio",
        "image+audio",
        "image",
        "audio",
        "audio",
        "video",
    ]
    assert Pools(audio=(5, 6), matching=(2, 3)) == POOLS


def test_deterministic_under_a_seed():
    for i in range(len(ITEMS)):
        assert draws(i, 50) == draws(i, 50)
    assert draws(1, 50, seed=1) != draws(1, 50, seed=0)


def test_paired_video_avm_rates_and_answers():
    counts = Counter(x.rule for x in draws(0))
    assert counts["paired"] + counts["avm-match"] + counts["avm-mismatch"] == 2000
    assert 0.08 < (counts["avm-match"] + counts["avm-mismatch"]) / 2000 < 0.12  # official p = 0.1
    assert 0.35 < counts["avm-mismatch"] / (counts["avm-match"] + counts["avm-mismatch"]) < 0.65
    for x in draws(0, 300):
        assert x.modality_mask == (1.0, 1.0) and x.visual == ITEMS[0].visual
        if x.rule == "avm-match":
            assert x.turns[0].text in AVM_QUESTIONS and x.turns[1].text == "Yes." and x.audio == ITEMS[0].audio
        if x.rule == "avm-mismatch":
            assert x.turns[1].text == "No." and x.audio in (ITEMS[5].audio, ITEMS[6].audio)


def test_video_only_is_index_paired_masked_or_combined():
    got = draws(1)
    counts = Counter(x.rule for x in got)
    assert set(counts) == {"video-audio-masked", "video-combined"}
    assert 0.16 < counts["video-combined"] / 2000 < 0.24  # official p = 0.2
    partner = ITEMS[POOLS.audio[1 % 2]]  # index 1 -> pool[1]
    assert all(x.audio == partner.audio for x in got)
    masked = next(x for x in got if x.rule == "video-audio-masked")
    assert masked.modality_mask == (1.0, 0.0) and masked.turns == ITEMS[1].turns
    orders = {x.turns for x in got if x.rule == "video-combined"}
    assert orders == {
        qa("Describe the audio., and, in the video, what happens?", "Applause., and, a man sings."),
        qa("In the video, what happens?, and, describe the audio.", "A man sings., and, applause."),
    }
    assert all(x.modality_mask == (1.0, 1.0) for x in got if x.rule == "video-combined")


def test_image_only_single_task_or_combined():
    got = draws(4)
    counts = Counter(x.rule for x in got)
    assert 0.42 < counts["image-single-task"] / 2000 < 0.58  # official p = 0.5
    assert all(x.modality_mask == (1.0, 1.0) and x.is_image for x in got)
    partner = ITEMS[POOLS.audio[4 % 2]]  # index 4 -> pool[0]: <asr>
    assert all(x.audio == partner.audio for x in got)
    singles = {x.turns[0].text for x in got if x.rule == "image-single-task"}
    assert singles == {"In the image, what is the title?", *POOL["asr"]}
    combined = next(x for x in got if x.rule == "image-combined" and x.turns[0].text.startswith("In the image"))
    assert combined.turns[0].text.split(", and ")[1].lower() in {p.lower() for p in POOL["asr"]}
    assert combined.turns[1].text == "A Calendar., and hello world."


def test_image_speech_matching():
    got = draws(2, 400)
    rules = Counter(x.rule for x in got)
    assert 0.35 < rules["matching-mismatch"] / 400 < 0.65
    for x in got:
        expected = (ITEMS[2].audio, "Yes") if x.rule == "matching-match" else (ITEMS[3].audio, "No")
        assert (x.audio, x.turns[1].text) == expected and x.modality_mask == (1.0, 1.0)


def test_audio_and_keys_and_multi_turn():
    asr = draws(5, 200)
    assert {x.turns[0].text for x in asr} == set(POOL["asr"]) and all(x.modality_mask == (0.0, 1.0) for x in asr)
    multi = draws(7, 50)
    assert all(x.rule == "video-audio-masked" and x.turns == ITEMS[7].turns for x in multi)  # never combined


def test_disabled_uses_samples_as_written():
    off = MixingConfig(enabled=False)
    masks = [mix(ITEMS, POOLS, i, 0, 0, off, POOL).modality_mask for i in range(len(ITEMS))]
    assert masks == [(1, 1), (1, 0), (1, 1), (1, 1), (1, 0), (0, 1), (0, 1), (1, 0)]


def test_instruction_variants_cover_every_draw():
    for i, item in enumerate(ITEMS):
        if item.visual is None:
            continue
        variants = instruction_variants(ITEMS, POOLS, i, CFG, POOL)
        assert {x.instruction for x in draws(i, 600)} <= variants, item.id


def test_unknown_prompt_key_is_reported():
    bad = [Item("x", "train.jsonl:9", qa("<caption>", "a"), None, False, MediaRef("a.wav"))]
    with pytest.raises(InputError, match=r"train.jsonl:9: prompt <caption> is not a key"):
        check_prompt_keys(bad, POOL)


def test_data_order_is_a_seeded_permutation_per_epoch():
    order = DataOrder(5, seed=3)
    epochs = [[order.at(e * 5 + k) for k in range(5)] for e in range(3)]
    assert all(sorted(i for _, i in ep) == list(range(5)) for ep in epochs)
    assert [e for ep in epochs for e, _ in ep] == [0] * 5 + [1] * 5 + [2] * 5
    assert epochs[0] != epochs[1]
    assert [DataOrder(5, 3).at(p) for p in range(15)] == [x for ep in epochs for x in ep]
