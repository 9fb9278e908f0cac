"""SAVE-mini's splits: train, val (small) and test, and the rules that make test measure generalisation.

Every rule is a pure function of the thing it judges, so any test can check a built world against it:

    sentences   `sentence_split(text)` puts every possible sentence in exactly one split by a hash of its text
                (SHA-256 of the lower-cased, space-normalised words: 15 % test, 5 % val, 80 % train). The world
                draws sentences until one falls in the clip's own split, so a sentence spoken in test (or val)
                is never spoken in train: the model must transcribe words, not recall sentences.
    voices      a voice is an espeak-ng accent + variant ("en-us+f3"). Voices with a TEST_ONLY_ACCENTS accent
                or a TEST_ONLY_VARIANTS variant are never heard in train or val; half of the test utterances use
                one (`unseen_voice(voice)`; the scene is tagged "unseen-voice").
    combos      the (colour, shape) pairs of HELDOUT_COMBOS (each colour and each shape once) never appear in
                train or val; half of the test scenes with coloured shapes show at least one ("heldout-combo").
    motions     the (shape, motion) pairs of HELDOUT_MOTIONS (one per shape; motions: moving left, right, up
                or down, growing, shrinking) never happen in train or val; half of the test video QA
                "what did the X do" questions ask about one ("heldout-motion").

Val follows the train rules for voices, combos and motions (it measures fitting, not generalisation) but has its
own sentences. Nothing else is held out: the OCR words, backgrounds, sounds and timbres are shared by all splits.
"""

from __future__ import annotations

import hashlib

from videosalmonn.savemini.scene import COLOURS, SHAPES
from videosalmonn.savemini.vocab import words

SPLITS = ("train", "val", "test")
SENTENCE_PERCENT = {"test": 15, "val": 5}  # the rest is train

ACCENTS = (
    "en",
    "en-us",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)  # ("en-gb" is not listed: espeak-ng 1.51 ignores a +variant on that alias)
VARIANTS = words(  # espeak-ng's voice variants (espeak-ng-data/voices/!v), each audibly different
    """
    m1 m2 m3 m4 m5 m6 m7 m8 f1 f2 f3 f4 f5 klatt klatt2 klatt3 klatt4 Annie adam aunty robert steph travis
    victor zac john max linda paul edward david benjamin Andy Lee
    """
)
TEST_ONLY_ACCENTS = frozenset({"en-gb-x-gbcwmd"})
TEST_ONLY_VARIANTS = frozenset({"m6", "f4", "klatt3", "steph"})
VOICES = tuple(f"{accent}+{variant}" for accent in ACCENTS for variant in VARIANTS)

# one pair per colour and per shape, so every colour and every shape is still seen in training
HELDOUT_COMBOS = frozenset((c, SHAPES[(3 * i + 1) % len(SHAPES)]) for i, c in enumerate(COLOURS))

ACTIONS = ("moved left", "moved right", "moved up", "moved down", "grew", "shrank", "flashed", "stayed still")
MOTIONS = ACTIONS[:6]  # what only video QA action scenes do (other scenes' objects stand still or flash)
HELDOUT_MOTIONS = frozenset((s, MOTIONS[(5 * i + 1) % len(MOTIONS)]) for i, s in enumerate(SHAPES))


def sentence_split(text: str) -> str:
    """The one split that may speak `text`."""
    words = " ".join(text.lower().split())
    bucket = int.from_bytes(hashlib.sha256(words.encode("utf-8")).digest()[:8], "big") % 100
    if bucket < SENTENCE_PERCENT["test"]:
        return "test"
    if bucket < SENTENCE_PERCENT["test"] + SENTENCE_PERCENT["val"]:
        return "val"
    return "train"


def unseen_voice(voice: str) -> bool:
    """True for the test-only voices (a held-out accent or variant)."""
    accent, _, variant = voice.partition("+")
    return accent in TEST_ONLY_ACCENTS or variant in TEST_ONLY_VARIANTS


def voice_allowed(voice: str, split: str) -> bool:
    return split == "test" or not unseen_voice(voice)


def combo_allowed(colour: str, shape: str, split: str) -> bool:
    return split == "test" or (colour, shape) not in HELDOUT_COMBOS


def motion_allowed(shape: str, action: str, split: str) -> bool:
    return split == "test" or (shape, action) not in HELDOUT_MOTIONS


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} (known: {', '.join(SPLITS)})")
    return split


def describe_rules() -> dict:
    """The rules as data, for world.json."""
    return {
        "sentence_percent": {**SENTENCE_PERCENT, "train": 100 - sum(SENTENCE_PERCENT.values())},
        "test_only_accents": sorted(TEST_ONLY_ACCENTS),
        "test_only_variants": sorted(TEST_ONLY_VARIANTS),
        "heldout_combos": sorted(" ".join(p) for p in HELDOUT_COMBOS),
        "heldout_motions": sorted(f"{s} {a}" for s, a in HELDOUT_MOTIONS),
    }
