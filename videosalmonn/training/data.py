"""Training data: manifests -> validated Items -> a seeded, resumable stream of Examples -> model Batches.

    sources (JSONL / official JSON / SAVE files) ─► read_items ─► validate_items (every problem before step 1)
    position p in an endless stream ─► (epoch, item) = DataOrder.at(p) ─► mix(...) ─► Example
    Example ─► cached features, or decoded media (DataLoader workers) ─► TrainCollator (encoders, prompts) ─► Batch

The stream is endless: epoch e is a seeded permutation of all items, and global micro-batch m takes positions
[m*G, (m+1)*G) with G = batch_size x processes; process r takes its slice [m*G + r*b, m*G + (r+1)*b). Nothing is
dropped or truncated, and the position (`samples_seen`) is all a checkpoint needs to resume the data.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from videosalmonn.config import ModelConfig
from videosalmonn.connector.multires import media_token_count
from videosalmonn.data.manifest import Sample, missing_media, read_manifest
from videosalmonn.data.save import READERS
from videosalmonn.errors import InputError, VideoSalmonnError
from videosalmonn.llm.tokenizer import TextTokenizer
from videosalmonn.media.audio import has_audio_stream
from videosalmonn.prompting.conversation import IGNORE, collate_prompts, encode_conversation
from videosalmonn.prompting.instruction import InstructionTokenizer
from videosalmonn.prompting.templates import PromptStyle
from videosalmonn.training.cache import CacheJob, FeatureCache, audio_key, visual_key
from videosalmonn.training.config import DataConfig, MixingConfig, SourceConfig
from videosalmonn.training.features import (
    Featurizer,
    RawAudio,
    RawVisual,
    SampleFeatures,
    clip_is_image,
    collate_features,
    load_raw_audio,
    load_raw_visual,
)
from videosalmonn.training.mixing import (
    Example,
    Item,
    MediaRef,
    Pools,
    PromptPool,
    check_prompt_keys,
    instruction_variants,
    mix,
    prompt_key,
)
from videosalmonn.types import Batch, Turn

MAX_LISTED = 10  # problems listed in one error message (the count is always given)


# ------------------------------------------------------------------------------------------- reading


def read_items(sources: tuple[SourceConfig, ...]) -> list[Item]:
    """Every sample of every source as an Item (in source order, the first `limit` of each, of those the samples of
    its `tasks`, `repeat` times).

    Raises InputError for the first malformed line (`file:line: reason`), then for *all* missing media files.
    """
    per_source = [(src, _of_tasks(_read_source(src)[: src.limit], src.tasks)) for src in sources]
    missing = [m for _, samples in per_source for m in missing_media(samples)]
    if missing:
        listed = "; ".join(missing[:MAX_LISTED]) + ("; ..." if len(missing) > MAX_LISTED else "")
        raise InputError(f"{len(missing)} media file(s) not found: {listed}")
    items = []
    for src, samples in per_source:
        converted = [_item(s, Path(src.path).name) for s in samples]
        items += converted * src.repeat
    return items


def _of_tasks(samples: list[Sample], tasks: tuple[str, ...]) -> list[Sample]:
    return [s for s in samples if s.task in tasks] if tasks else samples


def _read_source(src: SourceConfig) -> list[Sample]:
    if src.format == "auto":
        return read_manifest(src.path, src.media_root)
    return _read_save(src)


def _read_save(src: SourceConfig) -> list[Sample]:
    """A SAVEBench file through its task reader: the task's prompt, the most common reference as the answer,
    AVSD-style history as earlier turns. Video-only entries stay video-only (official). Spans are not applied: the
    SAVEBench clips are already cut (see data/save/ego4d_qa.py)."""
    if src.format not in READERS:
        raise InputError(f"{src.path}: format {src.format!r} is not 'auto' or a SAVE task ({', '.join(READERS)})")
    samples = []
    for k, s in enumerate(READERS[src.format](src.path, src.media_root)):
        answer = Counter(s.references).most_common(1)[0][0]
        turns = s.turns() + (Turn("assistant", answer),)
        samples.append(
            Sample(
                s.id,
                turns,
                video=_str(s.video),
                audio=_str(s.audio),
                image=_str(s.image),
                task=src.format,
                source=f"{src.path}[{k}]",
                video_audio=False,
            )
        )
    return samples


def _str(path) -> str | None:
    return None if path is None else str(path)


def _item(s: Sample, source_name: str) -> Item:
    if s.answer is None:
        raise InputError(f"{s.source}: the conversation must end with an assistant answer to train on")
    if s.image is not None and (s.start is not None or s.end is not None):
        raise InputError(f"{s.source}: a time span applies to video and audio, not to an image")
    visual = None
    if s.video is not None:
        visual = MediaRef(s.video, s.start, s.end)
    elif s.image is not None:
        visual = MediaRef(s.image)
    audio = MediaRef(s.audio, s.start, s.end) if s.audio is not None else None
    if audio is None and s.video is not None and s.video_audio:
        try:
            if has_audio_stream(s.video):
                audio = MediaRef(s.video, s.start, s.end)  # the video's own sound track
        except VideoSalmonnError as e:
            raise InputError(f"{s.source}: {e}") from None
    return Item(f"{source_name}#{s.id}", s.source, s.conversation, visual, s.image is not None, audio, s.task)


def validate_items(
    items: list[Item], tokenizer: TextTokenizer, style: PromptStyle, max_text_tokens: int, prompt_pool: PromptPool
) -> None:
    """Before training: `<key>` prompts exist in the pool, and every rendered prompt/answer piece fits
    `llm.max_text_tokens` (a `<key>` turn is checked with its longest replacement). Nothing is cut silently;
    prompts combined by the mixing rules are checked again when their batch is built."""
    if not items:
        raise InputError("no training samples")
    check_prompt_keys(items, prompt_pool)
    for item in items:
        try:
            encode_conversation([_longest(t, prompt_pool) for t in item.turns], style, tokenizer, 0, max_text_tokens)
        except InputError as e:
            raise InputError(f"{item.source}: {e}") from None


def _longest(turn: Turn, prompt_pool: PromptPool) -> Turn:
    """A `<key>` user turn as its longest replacement (the worst case for the length check)."""
    key = prompt_key(turn.text) if turn.role == "user" else None
    return Turn("user", max(prompt_pool[key], key=len)) if key is not None else turn


# ------------------------------------------------------------------------------------------- order


class DataOrder:
    """Position p of the endless stream -> (epoch, item index): epoch e is a seeded permutation of the items."""

    def __init__(self, n_items: int, seed: int):
        self.n = n_items
        self.seed = seed
        self._epoch, self._perm = -1, []

    def at(self, position: int) -> tuple[int, int]:
        epoch = position // self.n
        if epoch != self._epoch:
            self._perm = random.Random(f"order/{self.seed}/{epoch}").sample(range(self.n), self.n)
            self._epoch = epoch
        return epoch, self._perm[position % self.n]

    def epoch_of(self, position: int) -> float:
        return position / self.n


# ---------------------------------------------------------------------------------------- examples


@dataclass
class Loaded:
    """One Example with its model inputs: cached features, or decoded media for the encoders."""

    example: Example
    cached: SampleFeatures | None = None
    visual: RawVisual | None = None
    audio: RawAudio | None = None
    alignment: str | None = None  # the text the alignment loss reads the media tokens as (`TrainData.alignment_text`)


class TrainData:
    """The training set of this run: items, pools, mixing, and where the features come from."""

    def __init__(
        self,
        items: list[Item],
        data: DataConfig,
        seed: int,
        model_cfg: ModelConfig,
        instruction_tokenizer: InstructionTokenizer,
        prompt_pool: PromptPool,
        cache: FeatureCache | None,
    ):
        self.items = items
        self.pools = Pools.of(items)
        self.mixing: MixingConfig = data.mixing
        self.seed = seed
        self.order = DataOrder(len(items), seed)
        self.model_cfg = model_cfg
        self.instruction_tokenizer = instruction_tokenizer
        self.prompt_pool = prompt_pool
        self.cache = cache
        self.use_instruction = model_cfg.encoders.image_qformer.use_instruction
        self.spotlight = model_cfg.media.image_spotlight
        self.align_tasks = frozenset(data.align_tasks)

    def example(self, position: int) -> Example:
        epoch, index = self.order.at(position)
        return mix(self.items, self.pools, index, epoch, self.seed, self.mixing, self.prompt_pool)

    def alignment_text(self, example: Example) -> str | None:
        """The answer the alignment loss reads the media tokens as: an item of one of `data.align_tasks` whose
        answer the mixing rules kept as written (a combined or replaced answer describes other media too)."""
        item = self.items[example.index]
        if item.task not in self.align_tasks or example.turns[-1] != item.turns[-1]:
            return None
        return item.turns[-1].text

    def load(self, example: Example) -> Loaded:
        """Cached features when there is a cache, else the decoded media (runs in DataLoader workers)."""
        loaded = self._load(example)
        loaded.alignment = self.alignment_text(example)
        return loaded

    def _load(self, example: Example) -> Loaded:
        if self.cache is not None:
            vkey, akey = self.keys(example)
            missing = [k for k in (vkey, akey) if k is not None and k not in self.cache]
            if missing:
                raise InputError(
                    f"{example.source}: features not in the cache {self.cache.root} "
                    f"(instruction {example.instruction!r}); rebuild it with this training config"
                )
            is_image = clip_is_image(self.model_cfg, example.is_image)  # as load_clip gives it (spotlight: False)
            return Loaded(example, cached=self.cache.features(vkey, is_image, akey))
        visual = audio = None
        try:
            if example.visual is not None:
                visual = load_raw_visual(
                    self.model_cfg, example.visual, example.is_image, example.instruction, self.instruction_tokenizer
                )
            if example.audio is not None:
                audio = load_raw_audio(self.model_cfg, example.audio)
        except VideoSalmonnError as e:
            raise InputError(f"{example.source}: {e}") from None
        return Loaded(example, visual=visual, audio=audio)

    def keys(self, example: Example) -> tuple[str | None, str | None]:
        """Cache keys of an Example's visual and audio features."""
        assert self.cache is not None
        vkey = akey = None
        if example.visual is not None:
            instruction = example.instruction if self.use_instruction else None
            sha = self.cache.media_sha(example.visual.path)
            vkey = visual_key(sha, example.visual, example.is_image, instruction, self.spotlight)
        if example.audio is not None:
            akey = audio_key(self.cache.media_sha(example.audio.path), example.audio)
        return vkey, akey

    def cache_jobs(self) -> list[CacheJob]:
        """Every (visual, instruction) and audio the mixing rules can give this run: what a cache must hold."""
        assert self.cache is not None
        jobs: dict[str, CacheJob] = {}
        for i, item in enumerate(self.items):
            if item.audio is not None:
                sha = self.cache.media_sha(item.audio.path)
                key = audio_key(sha, item.audio)
                jobs.setdefault(key, CacheJob(key, "audio", item.audio, False, None, item.source))
            if item.visual is not None:
                sha = self.cache.media_sha(item.visual.path)
                variants = instruction_variants(self.items, self.pools, i, self.mixing, self.prompt_pool)
                for text in sorted(variants) if self.use_instruction else [None]:
                    key = visual_key(sha, item.visual, item.is_image, text, self.spotlight)
                    jobs.setdefault(key, CacheJob(key, "visual", item.visual, item.is_image, text, item.source))
        return list(jobs.values())


class RankMicroBatches(Dataset):
    """Micro-batch k of this process: stream positions base + k*G + rank*b ... + b - 1 (G = b x processes)."""

    def __init__(self, data: TrainData, base: int, batch_size: int, rank: int, world: int, count: int):
        self.data, self.base, self.b, self.rank, self.world, self.count = data, base, batch_size, rank, world, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, k: int) -> list[Loaded]:
        start = self.base + k * self.b * self.world + self.rank * self.b
        return [self.data.load(self.data.example(p)) for p in range(start, start + self.b)]


def micro_batches(
    data: TrainData, base: int, batch_size: int, rank: int, world: int, count: int, num_workers: int, seed: int
) -> DataLoader:
    """`count` micro-batches of this process from stream position `base`, decoded by `num_workers` workers."""
    # a private generator: creating the loader must not consume the global RNG (dropout after a resume)
    return DataLoader(
        RankMicroBatches(data, base, batch_size, rank, world, count),
        batch_size=None,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_identity,
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=False,
    )


def _identity(x):
    return x


# ------------------------------------------------------------------------------------------ batches


@dataclass
class CollatedExamples:
    """A micro-batch's model Batch with the Examples it was collated from (for error messages)."""

    batch: Batch
    examples: list[Example]
    lengths: list[int]  # tokens (text + media) of each sample

    def describe(self) -> str:
        return "; ".join(f"{e.id} ({e.source}, rule {e.rule}, {n} tokens)" for e, n in zip(self.examples, self.lengths))


class TrainCollator:
    """Loaded examples -> a padded model Batch: encoders for what is not cached, prompts with answer labels."""

    def __init__(
        self,
        cfg: ModelConfig,
        tokenizer: TextTokenizer,
        style: PromptStyle,
        featurizer: Featurizer | None,
        alignment_vocab: list[int] | None = None,
    ):
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.style = style
        self.featurizer = featurizer
        self.alignment_vocab = None if alignment_vocab is None else torch.tensor(alignment_vocab, dtype=torch.long)
        self.vocab_index = {t: i for i, t in enumerate(alignment_vocab or [])}

    def features(self, loaded: Loaded) -> SampleFeatures:
        if loaded.cached is not None:
            return loaded.cached
        v = self.featurizer.visual(loaded.visual) if loaded.visual is not None else None
        w, b = self.featurizer.audio(loaded.audio) if loaded.audio is not None else (None, None)
        is_image = loaded.visual.is_image if loaded.visual is not None else loaded.example.is_image  # the clip's
        return SampleFeatures(v, is_image, w, b)

    def __call__(self, loaded: list[Loaded]) -> CollatedExamples:
        examples = [x.example for x in loaded]
        feats = [self.features(x) for x in loaded]
        prompts = []
        for ex, f in zip(examples, feats):
            n = media_token_count(self.cfg.connector, f.frames, f.is_image, f.audio_slots)
            try:
                prompts.append(
                    encode_conversation(ex.turns, self.style, self.tokenizer, n, self.cfg.llm.max_text_tokens)
                )
            except InputError as e:
                raise InputError(f"{ex.source} (rule {ex.rule}): {e}") from None
        lengths = [len(p.ids) for p in prompts]
        for ex, n in zip(examples, lengths):
            if n > self.cfg.llm.max_positions:
                raise InputError(
                    f"{ex.source} (rule {ex.rule}): {n} tokens with the media; the LLM takes at most "
                    f"{self.cfg.llm.max_positions} (shorter clips or media.limits=official)"
                )
        prompt = collate_prompts(prompts, self.tokenizer.pad_id, side="right")
        if self.alignment_vocab is not None and any(x.alignment is not None for x in loaded):
            targets = self.alignment_targets([x.alignment for x in loaded])
            prompt = replace(prompt, alignment=targets, alignment_vocab=self.alignment_vocab)
        features = collate_features(feats, [ex.modality_mask for ex in examples], self.cfg)
        return CollatedExamples(Batch(None, prompt, [], features), examples, lengths)

    def alignment_targets(self, texts: list[str | None]) -> torch.Tensor:
        """(B, S) each sample's alignment text as indices into the alignment vocabulary, IGNORE-padded; a row of
        IGNORE where there is none."""
        rows = [[self.vocab_index[t] for t in self.tokenizer.encode(text)] if text else [] for text in texts]
        out = torch.full((len(rows), max(1, *map(len, rows))), IGNORE, dtype=torch.long)
        for k, row in enumerate(rows):
            out[k, : len(row)] = torch.tensor(row, dtype=torch.long)
        return out


def alignment_vocab(items: list[Item], tasks: frozenset[str], tokenizer: TextTokenizer, blank: int) -> list[int]:
    """The LLM token ids the alignment loss's softmax ranges over: the blank, then every token of the answers of
    the items of `tasks`, sorted (the media tokens learn to tell these apart, not all of the LLM's vocabulary)."""
    ids = {t for item in items if item.task in tasks for t in tokenizer.encode(item.turns[-1].text)}
    return [blank, *sorted(ids - {blank})]
