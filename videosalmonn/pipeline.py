"""Pipeline: one file (or a few) and a question in, an answer out. The one inference path of the package.

    Pipeline.from_pretrained("tiny").answer("Describe the video", video="clip.mp4")

A pipeline with random parts (the `tiny` preset, any config without `weights.delta` or another part's
weights) answers with random text; `Pipeline.notice` says so in one line ("random weights: ..."), and every
Answer carries it: the CLI prints it on stderr, `--json`, the server's response and the demo page show it.

media files ─► load_clip ─► audio_features ─► collate_media ─┐
question    ─► prompt style ─► tokens (+ media placeholders) ─┴► VideoSalmonn.generate ─► text + coverage

Media longer than STREAMED_SECONDS never exists whole as encoder input: `load` decodes and encodes it piece by
piece (frames uint8 until their batch of `frame_batch`, audio one 30-s chunk at a time) and keeps only the encoder
features (`MediaClip.features`); `prepare` batches features then, and the connector runs in spans of whole windows.
"""

from __future__ import annotations

import logging
import re
import tempfile
import warnings
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

import torch

from videosalmonn.checkpoint import check_weights, load_model, local_sources, save_pretrained
from videosalmonn.collate import collate_media, stack_features
from videosalmonn.config import GenerationConfig, ModelConfig
from videosalmonn.connector.multires import media_token_count
from videosalmonn.errors import CheckpointError, InputError
from videosalmonn.hub import upload_folder
from videosalmonn.llm.tokenizer import TextTokenizer, load_tokenizer
from videosalmonn.media.budget import ContextBudget
from videosalmonn.media.clip import OpenedClip, open_clip
from videosalmonn.media.features import audio_features, audio_windows
from videosalmonn.media.timeline import audio_slots
from videosalmonn.media.video import StreamDiverged
from videosalmonn.model import DTYPES, VideoSalmonn
from videosalmonn.prompting.conversation import EncodedPrompt, collate_prompts, encode_conversation
from videosalmonn.prompting.instruction import InstructionTokenizer, instruction_tokenizer_for
from videosalmonn.prompting.templates import prompt_style
from videosalmonn.types import AVFeatures, Batch, Coverage, MediaClip, PromptBatch, Request, Turn

log = logging.getLogger(__name__)


RANDOM_WEIGHTS = "random weights"  # how every random-weight notice starts (tests and clients can match it)


@dataclass
class Answer:
    """One generated answer: the text, its token ids, what of the media was used, and any notes."""

    text: str
    token_ids: list[int]
    coverage: Coverage
    media_tokens: int
    notes: list[str] = field(default_factory=list)
    notice: str | None = None
    """One line when the answer cannot mean anything (`Pipeline.notice`: random weights), else None."""

    def to_json(self) -> dict:
        """The answer and what was used, as one JSON object (`infer --json`; the server's extension + text);
        a `notice` key only when there is a notice."""
        return {
            "answer": self.text,
            **({"notice": self.notice} if self.notice else {}),
            "media_tokens": self.media_tokens,
            **asdict(self.coverage),
            "notes": self.coverage.notes + self.notes,
        }


def random_parts(cfg: ModelConfig) -> list[str]:
    """The parts `load_model` initialises with seeded random weights under `cfg` (no `weights.*` for them).

    A tower listed in `weights.random_towers` is not counted once a trained delta is given: it is trained here
    (`weights.towers`, or the delta's `encoder.*` keys) or deliberately frozen at its seeded init, which the delta
    was trained with (`mini`'s BEATs): the answers are then not noise."""
    w = cfg.weights
    trained = "connector" if cfg.llm.lora is None else "connector + LoRA"
    kept = set(w.random_towers) if w.delta else set()
    parts = {
        trained: w.delta,
        "vision encoder": w.instructblip or "instructblip" in kept,
        "Whisper": w.whisper or "whisper" in kept,
        "BEATs": w.beats or "beats" in kept,
        "LLM": w.llm,
    }
    return [name for name, source in parts.items() if not source]


def random_weights_notice(cfg: ModelConfig) -> str | None:
    """One line saying the answers are noise when any part of the model is random (None when none is)."""
    parts = random_parts(cfg)
    if not parts:
        return None
    return (
        f"{RANDOM_WEIGHTS}: {cfg.name} loads no weights for its {', '.join(parts)}, so the answers are random "
        "text (README: Using the real model)"
    )


STREAMED_SECONDS = 60.0  # `Pipeline.load`: longer media is encoded while it is decoded (bounded memory)
TRAINABLE_FILE = "trainable.safetensors"  # the trained tensors inside a training checkpoint directory
LATEST = "latest"  # a run's `checkpoints/latest`: a text file holding the newest checkpoint's name
CHECKPOINT_NAME = re.compile(r"step-\d{6,}")  # what `latest` may hold: a checkpoint of that run, never a path


def read_latest(marker: Path) -> Path:
    """The checkpoint directory a run's `checkpoints/latest` names (it may be gone: the caller checks)."""
    try:
        name = marker.read_text().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{marker}: unreadable ({e})") from None
    if not CHECKPOINT_NAME.fullmatch(name):
        raise CheckpointError(
            f"{marker}: holds {name!r}, but it must name a checkpoint of this run (step-XXXXXX in "
            f"{marker.parent}); fix or delete it"
        )
    return marker.parent / name


def trained_weights_file(path: str | Path) -> Path:
    """`weights.delta` as a user may give it -> the file to read: a training checkpoint directory (`step-XXXXXX/`)
    -> its trainable.safetensors; a run's `checkpoints/latest` -> that of the checkpoint it names; else `path`."""
    path = Path(path)
    if path.name == LATEST and path.is_file():
        step = read_latest(path)
        if not step.is_dir():
            raise CheckpointError(f"{path} names {step.name}, which does not exist")
        path = step
    if path.is_dir():
        if not (path / TRAINABLE_FILE).is_file():
            raise CheckpointError(
                f"{path}: a directory without {TRAINABLE_FILE}; give a training checkpoint (step-XXXXXX/ or the "
                "run's checkpoints/latest), a trainable .safetensors or an official delta .pt"
            )
        return path / TRAINABLE_FILE
    return path


def resolve_device(device: str | torch.device | None) -> torch.device:
    """`device` checked against this torch build (None: cuda if available, else cpu); InputError if unusable."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        d = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"device {str(device)!r}: not a device name (cpu, cuda, cuda:1, mps)") from None
    if d.type == "cpu":
        return d
    backend = getattr(torch, d.type, None) if d.type in ("cuda", "mps", "xpu") else None
    if backend is None:
        raise InputError(f"device {str(device)!r}: not supported (cpu, cuda, cuda:N, mps, xpu)")
    build = f"torch {torch.__version__}"
    if not backend.is_available():
        raise InputError(f"device {str(device)!r}: no {d.type} device is available to this build ({build}); use cpu")
    count = backend.device_count() if hasattr(backend, "device_count") else 1
    if d.index is not None and d.index >= count:
        raise InputError(f"device {str(device)!r}: only {count} {d.type} device(s) visible")
    return d


class Pipeline:
    """A loaded model with its tokenizers and prompt layout: `answer` one request, `answer_batch` many.

    `notice`: one line when the model's answers cannot mean anything (random weights), else None; set by
    `from_pretrained` from the config it loaded, copied onto every Answer.
    """

    def __init__(
        self,
        model: VideoSalmonn,
        tokenizer: TextTokenizer,
        instruction_tokenizer: InstructionTokenizer,
        notice: str | None = None,
    ):
        self.model = model
        self.cfg: ModelConfig = model.cfg
        self.tokenizer = tokenizer
        self.instruction_tokenizer = instruction_tokenizer
        self.style = prompt_style(self.cfg.llm.prompt_style)
        self.notice = notice

    @classmethod
    def from_pretrained(
        cls,
        model: str | Path | ModelConfig = "tiny",
        overrides: list[str] | tuple[str, ...] = (),
        device: str | torch.device | None = None,
    ) -> Pipeline:
        """Load a model: a preset name (`tiny`, `video-salmonn-13b`), a model YAML, a directory holding `model.yaml`
        (`save_pretrained`, `videosalmonn export`), the hub id of one (`push_to_hub`), or a ModelConfig;
        `overrides`: dotted `key=value` strings; `device`: checked against this torch build (default: cuda if
        available, else cpu). `weights.delta` may also be a training checkpoint directory or a run's
        `checkpoints/latest`. Parts without weights are seeded random, and then `notice`
        says so. Third-party deprecation warnings raised while loading are not shown."""
        cfg = (
            model.replace(*overrides)
            if isinstance(model, ModelConfig)
            else ModelConfig.from_name(str(model), overrides)
        )
        device = resolve_device(device)
        if cfg.weights.delta:  # a training checkpoint directory or `latest` -> its trainable.safetensors
            delta = str(trained_weights_file(cfg.weights.delta))
            cfg = replace(cfg, weights=replace(cfg.weights, delta=delta))
        if DTYPES[cfg.dtype] == torch.float16 and device.type == "cpu":
            log.warning("%s: running in float32 on CPU (the preset's float16 is for GPUs)", cfg.name)
            cfg = cfg.replace("dtype=float32")
        w = cfg.weights
        check_weights(cfg, for_inference=True)  # fail fast: before any tokenizer or weight is read
        with warnings.catch_warnings():  # e.g. peft calling transformers' deprecated is_gradient_checkpointing
            for category in (FutureWarning, DeprecationWarning):
                warnings.filterwarnings("ignore", category=category, module=r"(transformers|peft)(\.|$)")
            tokenizer, instruction_tokenizer = load_tokenizer(w.tokenizer or w.llm), instruction_tokenizer_for(cfg)
            built = load_model(cfg, device, for_inference=True)
        return cls(built, tokenizer, instruction_tokenizer, random_weights_notice(cfg))

    @property
    def device(self) -> torch.device:
        """Where the model's weights are."""
        return next(self.model.parameters()).device

    def save_pretrained(self, out_dir: str | Path) -> Path:
        """The model as a directory `from_pretrained` (and `--model`) loads back: model.yaml + model.safetensors
        of the trained tensors, the frozen parts named by hub id or path (`checkpoint.save_pretrained`)."""
        return save_pretrained(self.model, out_dir)

    def push_to_hub(
        self,
        repo_id: str,
        private: bool | None = None,
        token: str | None = None,
        commit_message: str = "Upload video-SALMONN model",
    ) -> str:
        """`save_pretrained` into a temporary directory, uploaded as the model repo `repo_id` (created if needed;
        `private` applies to a new repo; `token`: None uses the logged-in one); `from_pretrained(repo_id)` then
        loads it. Frozen parts named by a local path are a warning: another machine lacks them. Returns the
        commit's URL."""
        local = local_sources(self.cfg)
        if local:
            log.warning("%s: names local files another machine lacks: %s", repo_id, ", ".join(local))
        with tempfile.TemporaryDirectory(prefix="videosalmonn-push-") as tmp:
            self.save_pretrained(tmp)
            return upload_folder(tmp, repo_id, private, token, commit_message)

    # ------------------------------------------------------------------------------------------ inference

    def answer(
        self,
        prompt: str | tuple[Turn, ...],
        *,
        video: str | None = None,
        audio: str | None = None,
        image: str | None = None,
        generation: GenerationConfig | None = None,
    ) -> Answer:
        """Answer one question (or a conversation of Turns) about a video, an image and/or an audio file; a
        video's own sound track is used unless `audio` is given. `generation`: decoding settings (default: the
        model config's). For a time span or a masked stream, use `answer_batch([Request(...)])`."""
        return self.answer_batch([Request(prompt, video, audio, image)], generation)[0]

    def answer_batch(
        self,
        requests: list[Request],
        generation: GenerationConfig | None = None,
        clips: list[MediaClip] | None = None,
        streamer=None,
        should_stop=None,
    ) -> list[Answer]:
        """Answer several requests in one batched generation (left padding; same answers as one by one).

        `streamer`: a transformers `BaseStreamer`; its `put` gets each step's new ids, (B,) (greedy/sampling only).
        `should_stop`: () -> bool, asked after every decoding step; true raises `llm.GenerationAborted`.
        """
        gen = generation or self.cfg.generation
        clips = clips or [self.load(r) for r in requests]
        batch, counts = self.prepare(requests, clips, side="left")
        room = self.cfg.llm.max_positions - batch.prompt.input_ids.shape[1]
        notes = []
        if room <= 0:
            raise InputError(
                f"the input is {batch.prompt.input_ids.shape[1]} tokens; the LLM takes at most "
                f"{self.cfg.llm.max_positions} (shorter media or --limits official)"
            )
        if room < gen.max_new_tokens:
            notes.append(f"answer limited to {room} tokens by the LLM context ({self.cfg.llm.max_positions})")
            gen = GenerationConfig(**{**asdict(gen), "max_new_tokens": room})
        ids = self.model.generate(
            batch.to(self.device, DTYPES[self.cfg.dtype]),
            gen,
            self.tokenizer.eos_id,
            self.tokenizer.pad_id,
            streamer,
            should_stop,
        )
        answers = []
        for row, clip, n, request in zip(ids, clips, counts, requests):
            tokens = _until_eos(row.tolist(), self.tokenizer.eos_id)
            coverage = masked_coverage(clip.coverage, request.modality_mask)
            text = self.tokenizer.decode(tokens).strip()
            answers.append(Answer(text, tokens, coverage, n, list(notes), self.notice))
        return answers

    # ------------------------------------------------------------------------------------------ batching

    def load(self, request: Request, max_media_seconds: float | None = None) -> MediaClip:
        """The request's media, refused (InputError, MediaTooLong) when the LLM context or `max_media_seconds`
        cannot take it, while decoding where the headers do not say. Media longer than STREAMED_SECONDS is
        encoded as it is decoded (`encode_streamed`): the clip then holds its encoder features, not its frames."""
        opened = open_clip(
            self.cfg.media,
            video=request.video,
            audio=request.audio,
            image=request.image,
            start=request.start,
            end=request.end,
            video_audio=request.video_audio,
            context=ContextBudget(
                self.cfg.llm.max_positions,
                partial(media_token_count, self.cfg.connector),
                chunk_padding=self.cfg.media.limits == "official",
            ),
            max_media_seconds=max_media_seconds,
        )
        if opened.seconds() <= STREAMED_SECONDS or self.model.encoder is None:
            return opened.load()
        try:
            return self.encode_streamed(opened, instruction_of(request))
        except StreamDiverged:  # the packet index was wrong: decode the video whole, as load_clip does
            return opened.load()

    def encode_streamed(self, opened: OpenedClip, instruction: str) -> MediaClip:
        """The clip's encoder features, decoded and encoded piece by piece: the audio decoded, then encoded one
        window of `chunk_batch` 30-s chunks at a time, the video frames decoded and encoded `frame_batch` at a
        time (kept uint8 until their batch). The features equal those of the clip loaded whole (`prepare`)."""
        encoder, media = self.model.encoder, self.cfg.media
        audio = opened.load_audio()
        if opened.video is not None:
            frames = opened.video.batches(encoder.frame_batch, media.image_size)
        else:
            frames = () if opened.image is None else opened.image.split(encoder.frame_batch)
        windows = () if audio is None else self._audio_windows(audio.samples)
        ids, mask = self.instruction_tokenizer([instruction])
        features = encoder.encode_sample(frames, opened.is_image, windows, ids, mask)
        sampled = None if opened.video is None else opened.video.sampled
        return opened.clip(opened.image, sampled, audio, features.to("cpu"), instruction)

    def _audio_windows(self, samples: torch.Tensor):
        padding = self.cfg.media.limits == "official"
        chunks = self.model.encoder.chunk_batch
        return audio_windows(samples, self.cfg.media.beats_fp16_waveform, chunk_padding=padding, chunks=chunks)

    def prepare(self, requests: list[Request], clips: list[MediaClip], side: str = "left") -> tuple[Batch, list[int]]:
        """Requests + their decoded media -> a padded Batch (CPU) and each sample's media token count. A clip that
        holds its encoder features (`load` of long media) makes a batch of features: the others are then encoded
        here, one by one."""
        if any(c.features is not None for c in clips):
            return self._prepare_features(requests, clips, side)
        padding = self.cfg.media.limits == "official"
        feats = [
            None
            if c.waveform is None
            else audio_features(c.waveform, self.cfg.media.beats_fp16_waveform, chunk_padding=padding)
            for c in clips
        ]
        counts = [
            media_token_count(
                self.cfg.connector,
                0 if c.frames is None else c.frames.shape[0],
                c.is_image,
                0 if f is None else f.slots,
            )
            for c, f in zip(clips, feats)
        ]
        prompt = self._prompts(requests, counts, side)
        ids, mask = self.instruction_tokenizer([instruction_of(r) for r in requests])
        masks = [
            r.modality_mask or (float(c.frames is not None), float(f is not None))
            for r, c, f in zip(requests, clips, feats)
        ]
        media = collate_media([c.frames for c in clips], [c.is_image for c in clips], feats, ids, mask, masks)
        return Batch(media, prompt, [c.coverage for c in clips]), counts

    def _prepare_features(self, requests: list[Request], clips: list[MediaClip], side: str) -> tuple[Batch, list[int]]:
        padding = self.cfg.media.limits == "official"
        counts = []
        for c in clips:
            if c.features is not None:
                frames, slots = int(c.features.visual_slots[0]), int(c.features.audio_slots[0])
            else:
                frames = 0 if c.frames is None else c.frames.shape[0]
                slots = 0 if c.waveform is None else audio_slots(c.waveform.numel(), padding)
            counts.append(media_token_count(self.cfg.connector, frames, c.is_image, slots))
        prompt = self._prompts(requests, counts, side)
        features = []
        for clip, request in zip(clips, requests):
            instruction = instruction_of(request)
            if clip.features is None:
                features.append(self._encode_loaded(clip, instruction))
                continue
            if clip.instruction != instruction and self.model.encoder.use_instruction:
                raise ValueError("a clip encoded for another instruction (its first question): load it again")
            features.append(clip.features)
        masks = [
            r.modality_mask or (float(c.coverage.frames > 0), float(c.coverage.audio_present))
            for r, c in zip(requests, clips)
        ]
        return Batch(None, prompt, [c.coverage for c in clips], stack_features(features, masks)), counts

    def _encode_loaded(self, clip: MediaClip, instruction: str) -> AVFeatures:
        """A decoded clip's features, alone (as `encode_streamed` gives them)."""
        encoder = self.model.encoder
        frames = () if clip.frames is None else clip.frames.split(encoder.frame_batch)
        windows = () if clip.waveform is None else self._audio_windows(clip.waveform)
        ids, mask = self.instruction_tokenizer([instruction])
        return encoder.encode_sample(frames, clip.is_image, windows, ids, mask).to("cpu")

    def _prompts(self, requests: list[Request], counts: list[int], side: str) -> PromptBatch:
        prompts: list[EncodedPrompt] = [
            encode_conversation(r.turns(), self.style, self.tokenizer, n, self.cfg.llm.max_text_tokens)
            for r, n in zip(requests, counts)
        ]
        return collate_prompts(prompts, self.tokenizer.pad_id, side)


def instruction_of(request: Request) -> str:
    """The InstructBLIP Q-Former's instruction for a request: its first question (not a system text before it)."""
    return next(t.text for t in request.turns() if t.role == "user")


def masked_coverage(coverage: Coverage, mask: tuple[float, float] | None) -> Coverage:
    """What the model was given once `Request.modality_mask` applied: a masked audio stream is not present
    (`audio_present: false`), and each masked stream gets a note."""
    if mask is None:
        return coverage
    visual, audio = mask
    notes = []
    if audio == 0 and coverage.audio_present:
        notes.append("audio masked (modality_mask): the model was given zeros for the audio stream")
    if visual == 0 and coverage.frames:
        notes.append("visual stream masked (modality_mask): the model was given zeros for the frames")
    if not notes:
        return coverage
    return replace(coverage, audio_present=coverage.audio_present and audio != 0, notes=coverage.notes + notes)


def _until_eos(ids: list[int], eos_id: int) -> list[int]:
    return ids[: ids.index(eos_id)] if eos_id in ids else ids
