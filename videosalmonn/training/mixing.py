"""Mixed unpaired audio-visual training (paper §3.3; spec §5.2, as the official code does it), as pure functions.

Every rule decision comes from `random.Random("<seed>/<epoch>/<index>")`: the same (seed, epoch, sample) gives
the same Example in every process, after every resume, whatever the batch size or the number of processes.

    sample kind      what the model sees (default probabilities = official)                    modality mask
    video + audio    as written;                                                                [1, 1]
                     p=0.1: an AVM question ("Is the audio compatible with the video?");
                            p=0.5 of those: audio swapped for a random audio sample -> "No.", else "Yes."
    video            + the audio of audio sample (index mod n) (index-paired, not random):
                     p=0.8: the video task only, the audio present but masked                  [1, 0]
                     p=0.2: combined: "<q_a>, and, in the video, <q_v>" (order shuffled),
                            answer "<a_a>, and, <a_v>"                                          [1, 1]
    image + audio    as written; an answer `audio_text_matching` becomes "Yes" or (p=0.5,       [1, 1]
                     another image+audio sample's audio) "No"
    image            + the audio of audio sample (index mod n); [audio task, "In the image, <q>"]  [1, 1]
                     shuffled; p=0.5: only the first task, else both joined with ", and "
    audio            as written                                                                 [0, 1]

A user turn written `<key>` is first replaced by a random prompt of the pool's list for `key`. Combined prompts
are built only from single-turn (question, answer) samples; multi-turn samples keep their dialogue (a
video/image-only one still gets its paired audio, masked). Not reproduced: the official per-batch modality draw
(every batch all-video or all-image; here batches mix freely) and its path-name tests (`only_need_video`,
`yuwenyi`, `/AMI/`).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, replace
from pathlib import Path

from videosalmonn.errors import ConfigError, InputError
from videosalmonn.training.config import MixingConfig
from videosalmonn.types import Turn

AVM_QUESTIONS = (
    "Is the audio compatible with the video?",
    "Does the audio come from the same source as the video?",
    "Is the audio related to the video?",
)
AVM_YES, AVM_NO = "Yes.", "No."  # official video AVM answers (with a full stop)
MATCHING_MARKER = "audio_text_matching"  # answer placeholder of image + spoken-caption matching samples
MATCHING_YES, MATCHING_NO = "Yes", "No"  # official image matching answers (no full stop)
VIDEO_PREFIX, IMAGE_PREFIX = "In the video, ", "In the image, "
VIDEO_JOIN, IMAGE_JOIN = ", and, ", ", and "  # official separators (sic: the video one has two commas)
KEY_PATTERN = re.compile(r"^<([A-Za-z0-9_\-]+)>$")


@dataclass(frozen=True)
class MediaRef:
    """A media file and the span of it to use (seconds; None = from the start / to the end)."""

    path: str
    start: float | None = None
    end: float | None = None


@dataclass(frozen=True)
class Item:
    """A validated training sample, as the rules see it."""

    id: str
    source: str  # "file:line" for messages
    turns: tuple[Turn, ...]  # user first, ends with an assistant answer
    visual: MediaRef | None = None  # a video (with span) or an image
    is_image: bool = False
    audio: MediaRef | None = None  # an audio file, or the video's own track (same path as the video)
    task: str | None = None  # the manifest's `task` (SAVE-mini: asr, ocr, ...), if it names one

    @property
    def kind(self) -> str:
        visual = "image" if self.is_image else "video"
        if self.visual is None:
            return "audio"
        return f"{visual}+audio" if self.audio is not None else visual

    @property
    def single_turn(self) -> bool:
        return len(self.turns) == 2


@dataclass(frozen=True)
class Example:
    """One training input after the rules: media, modality mask and the conversation to learn."""

    index: int  # the Item it came from
    id: str
    source: str
    rule: str  # which rule made it (logged, tested)
    turns: tuple[Turn, ...]
    visual: MediaRef | None
    is_image: bool
    audio: MediaRef | None
    modality_mask: tuple[float, float]  # multipliers of the [visual, audio] streams

    @property
    def instruction(self) -> str:
        """The text the InstructBLIP Q-Former sees with every frame: the first user turn (spec §2)."""
        return self.turns[0].text


@dataclass(frozen=True)
class Pools:
    """Indices of the items the rules borrow audio from."""

    audio: tuple[int, ...]  # audio-only items (official: the audio manifest)
    matching: tuple[int, ...]  # image + audio items (official: SpokenCOCO)

    @staticmethod
    def of(items: list[Item]) -> Pools:
        return Pools(
            tuple(i for i, x in enumerate(items) if x.kind == "audio"),
            tuple(i for i, x in enumerate(items) if x.kind == "image+audio"),
        )


PromptPool = dict[str, tuple[str, ...]]
POOL_SETTING = "data.mixing.prompt_pool in the training YAML, or --prompt-pool FILE with cache-features --manifest"


def load_prompt_pool(path: str | Path | None) -> PromptPool:
    """`{key: [prompt, ...]}` from a JSON file (None: an empty pool)."""
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: prompt pool not found ({POOL_SETTING})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    ok = isinstance(data, dict) and all(
        isinstance(v, list) and v and all(isinstance(p, str) and p.strip() for p in v) for v in data.values()
    )
    if not ok:
        raise ConfigError(f"{path}: expected {{key: [prompt, ...]}} with non-empty lists of strings")
    return {k: tuple(v) for k, v in data.items()}


def prompt_key(text: str) -> str | None:
    """`asr` for a turn written `<asr>`, else None."""
    m = KEY_PATTERN.match(text.strip())
    return m.group(1) if m else None


def check_prompt_keys(items: list[Item], pool: PromptPool) -> None:
    """Every `<key>` user turn must name a key of the pool (checked before training)."""
    for item in items:
        for turn in item.turns:
            key = prompt_key(turn.text) if turn.role == "user" else None
            if key is not None and key not in pool:
                known = f"known keys: {', '.join(sorted(pool))}" if pool else f"no prompt pool is set: {POOL_SETTING}"
                raise InputError(f"{item.source}: prompt <{key}> is not a key of the prompt pool ({known})")


# ------------------------------------------------------------------------------------------------- rules


def sample_rng(seed: int, epoch: int, index: int) -> random.Random:
    """The generator of every decision about one sample in one epoch (string seeds hash the same everywhere)."""
    return random.Random(f"{seed}/{epoch}/{index}")


def mix(
    items: list[Item], pools: Pools, index: int, epoch: int, seed: int, cfg: MixingConfig, prompt_pool: PromptPool
) -> Example:
    """The Example that item `index` gives in `epoch` (pure: same arguments, same Example)."""
    rng = sample_rng(seed, epoch, index)
    item = items[index]
    item = replace(item, turns=expand_keys(item.turns, prompt_pool, rng))
    if not cfg.enabled:
        return as_written(index, item)
    rule = {
        "video+audio": _paired_video,
        "video": _video_only,
        "image+audio": _paired_image,
        "image": _image_only,
        "audio": _as_written_rule,
    }[item.kind]
    return rule(items, pools, index, item, rng, cfg, prompt_pool)


def as_written(index: int, item: Item, rule: str = "as-written") -> Example:
    mask = (float(item.visual is not None), float(item.audio is not None))
    return Example(index, item.id, item.source, rule, item.turns, item.visual, item.is_image, item.audio, mask)


def expand_keys(turns: tuple[Turn, ...], pool: PromptPool, rng: random.Random) -> tuple[Turn, ...]:
    """Replace every `<key>` user turn by a random prompt of the pool's list for that key."""
    out = []
    for turn in turns:
        key = prompt_key(turn.text) if turn.role == "user" else None
        out.append(Turn("user", rng.choice(pool[key])) if key is not None else turn)
    return tuple(out)


def _as_written_rule(items, pools, index, item, rng, cfg, prompt_pool) -> Example:
    return as_written(index, item)


def _paired_video(items, pools, index, item, rng, cfg, prompt_pool) -> Example:
    if not pools.audio or rng.random() >= cfg.avm_probability:
        return as_written(index, item, "paired")
    question = rng.choice(AVM_QUESTIONS)
    audio, answer, rule = item.audio, AVM_YES, "avm-match"
    if rng.random() < cfg.avm_mismatch_probability:
        audio, answer, rule = items[rng.choice(pools.audio)].audio, AVM_NO, "avm-mismatch"
    turns = (Turn("user", question), Turn("assistant", answer))
    return Example(index, item.id, item.source, rule, turns, item.visual, False, audio, (1.0, 1.0))


def _video_only(items, pools, index, item, rng, cfg, prompt_pool) -> Example:
    if not pools.audio:
        return as_written(index, item, "video-only")
    partner = items[pools.audio[index % len(pools.audio)]]
    combine = item.single_turn and partner.single_turn and rng.random() < cfg.video_combined_probability
    if not combine:
        return Example(
            index, item.id, item.source, "video-audio-masked", item.turns, item.visual, False, partner.audio, (1.0, 0.0)
        )
    tasks = [_qa(expand_keys(partner.turns, prompt_pool, rng)), _prefixed(VIDEO_PREFIX, _qa(item.turns))]
    rng.shuffle(tasks)
    return Example(
        index,
        item.id,
        item.source,
        "video-combined",
        _joined(tasks, VIDEO_JOIN),
        item.visual,
        False,
        partner.audio,
        (1.0, 1.0),
    )


def _paired_image(items, pools, index, item, rng, cfg, prompt_pool) -> Example:
    if item.turns[-1].text != MATCHING_MARKER:
        return as_written(index, item, "paired")
    others = [i for i in pools.matching if i != index and items[i].audio != item.audio]
    audio, answer, rule = item.audio, MATCHING_YES, "matching-match"
    if others and rng.random() < cfg.matching_mismatch_probability:
        audio, answer, rule = items[rng.choice(others)].audio, MATCHING_NO, "matching-mismatch"
    turns = item.turns[:-1] + (Turn("assistant", answer),)
    return Example(index, item.id, item.source, rule, turns, item.visual, True, audio, (1.0, 1.0))


def _image_only(items, pools, index, item, rng, cfg, prompt_pool) -> Example:
    if not pools.audio:
        return as_written(index, item, "image-only")
    partner = items[pools.audio[index % len(pools.audio)]]
    if not (item.single_turn and partner.single_turn):
        return Example(
            index, item.id, item.source, "image-audio-masked", item.turns, item.visual, True, partner.audio, (1.0, 0.0)
        )
    tasks = [_qa(expand_keys(partner.turns, prompt_pool, rng)), _prefixed(IMAGE_PREFIX, _qa(item.turns))]
    rng.shuffle(tasks)
    if rng.random() < cfg.image_single_task_probability:
        turns, rule = (Turn("user", tasks[0][0]), Turn("assistant", tasks[0][1])), "image-single-task"
    else:
        turns, rule = _joined(tasks, IMAGE_JOIN), "image-combined"
    return Example(index, item.id, item.source, rule, turns, item.visual, True, partner.audio, (1.0, 1.0))


def _qa(turns: tuple[Turn, ...]) -> tuple[str, str]:
    return turns[0].text, turns[1].text


def _prefixed(prefix: str, qa: tuple[str, str]) -> tuple[str, str]:
    return prefix + qa[0].lower(), qa[1]


def _joined(tasks: list[tuple[str, str]], join: str) -> tuple[Turn, Turn]:
    (q0, a0), (q1, a1) = tasks
    return Turn("user", q0 + join + q1.lower()), Turn("assistant", a0 + join + a1.lower())


# ------------------------------------------------------------------------------------ what the cache needs


def instruction_variants(
    items: list[Item], pools: Pools, index: int, cfg: MixingConfig, prompt_pool: PromptPool
) -> set[str]:
    """Every first user turn item `index` can get from `mix` (the InstructBLIP instruction, part of the visual
    feature-cache key). A superset: probabilities are ignored, only switched-off rules are left out."""
    item = items[index]
    own = _key_variants(item.turns[0].text, prompt_pool)
    if not cfg.enabled or item.visual is None:
        return own
    if item.kind == "video+audio":
        return own | (set(AVM_QUESTIONS) if pools.audio and cfg.avm_probability > 0 else set())
    if item.kind == "image+audio" or not pools.audio:
        return own
    partner = items[pools.audio[index % len(pools.audio)]]
    if not (item.single_turn and partner.single_turn):
        return own
    theirs = _key_variants(partner.turns[0].text, prompt_pool)
    prefix, join = (VIDEO_PREFIX, VIDEO_JOIN) if item.kind == "video" else (IMAGE_PREFIX, IMAGE_JOIN)
    mine = {prefix + q.lower() for q in own}
    combined = {a + join + v.lower() for a in theirs for v in mine} | {
        v + join + a.lower() for a in theirs for v in mine
    }
    if item.kind == "video":
        return own | combined
    return theirs | mine | combined


def _key_variants(text: str, pool: PromptPool) -> set[str]:
    key = prompt_key(text)
    return set(pool[key]) if key is not None else {text}
