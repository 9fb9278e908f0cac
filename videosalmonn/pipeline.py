"""Pipeline: one file (or a few) and a question in, an answer out. The one inference path of the package.

    Pipeline.from_pretrained("tiny").answer("Describe the video", video="clip.mp4")

media files ─► load_clip ─► audio_features ─► collate_media ─┐
question    ─► prompt style ─► tokens (+ media placeholders) ─┴► VideoSalmonn.generate ─► text + coverage
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import torch

from videosalmonn.checkpoint import check_weights, load_model
from videosalmonn.collate import collate_media
from videosalmonn.config import GenerationConfig, ModelConfig
from videosalmonn.connector.multires import media_token_count
from videosalmonn.errors import InputError
from videosalmonn.llm.tokenizer import TextTokenizer, load_tokenizer
from videosalmonn.media.budget import ContextBudget
from videosalmonn.media.clip import load_clip
from videosalmonn.media.features import audio_features
from videosalmonn.model import DTYPES, VideoSalmonn
from videosalmonn.prompting.conversation import EncodedPrompt, collate_prompts, encode_conversation
from videosalmonn.prompting.instruction import InstructionTokenizer, instruction_tokenizer_for
from videosalmonn.prompting.templates import prompt_style
from videosalmonn.types import Batch, Coverage, MediaClip, Request, Turn

log = logging.getLogger(__name__)


@dataclass
class Answer:
    text: str
    token_ids: list[int]
    coverage: Coverage
    media_tokens: int
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "answer": self.text,
            "media_tokens": self.media_tokens,
            **asdict(self.coverage),
            "notes": self.coverage.notes + self.notes,
        }


class Pipeline:
    def __init__(self, model: VideoSalmonn, tokenizer: TextTokenizer, instruction_tokenizer: InstructionTokenizer):
        self.model = model
        self.cfg: ModelConfig = model.cfg
        self.tokenizer = tokenizer
        self.instruction_tokenizer = instruction_tokenizer
        self.style = prompt_style(self.cfg.llm.prompt_style)

    @classmethod
    def from_pretrained(
        cls,
        model: str | Path | ModelConfig = "tiny",
        overrides: list[str] | tuple[str, ...] = (),
        device: str | torch.device | None = None,
    ) -> Pipeline:
        """A preset name (`tiny`, `video-salmonn-13b`), a YAML config file, or a ModelConfig; dotted overrides."""
        cfg = (
            model.replace(*overrides)
            if isinstance(model, ModelConfig)
            else ModelConfig.from_name(str(model), overrides)
        )
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if DTYPES[cfg.dtype] == torch.float16 and torch.device(device).type == "cpu":
            log.warning("%s: running in float32 on CPU (the preset's float16 is for GPUs)", cfg.name)
            cfg = cfg.replace("dtype=float32")
        w = cfg.weights
        check_weights(cfg, for_inference=True)  # fail fast: before any tokenizer or weight is read
        tokenizer, instruction_tokenizer = load_tokenizer(w.tokenizer or w.llm), instruction_tokenizer_for(cfg)
        return cls(load_model(cfg, device, for_inference=True), tokenizer, instruction_tokenizer)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

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
        for row, clip, n in zip(ids, clips, counts):
            tokens = _until_eos(row.tolist(), self.tokenizer.eos_id)
            answers.append(Answer(self.tokenizer.decode(tokens).strip(), tokens, clip.coverage, n, list(notes)))
        return answers

    # ------------------------------------------------------------------------------------------ batching

    def load(self, request: Request, max_media_seconds: float | None = None) -> MediaClip:
        """The request's media, refused (InputError, MediaTooLong) when the LLM context or `max_media_seconds`
        cannot take it, while decoding where the headers do not say."""
        return load_clip(
            self.cfg.media,
            video=request.video,
            audio=request.audio,
            image=request.image,
            start=request.start,
            end=request.end,
            video_audio=request.video_audio,
            context=ContextBudget(self.cfg.llm.max_positions, partial(media_token_count, self.cfg.connector)),
            max_media_seconds=max_media_seconds,
        )

    def prepare(self, requests: list[Request], clips: list[MediaClip], side: str = "left") -> tuple[Batch, list[int]]:
        """Requests + their decoded media -> a padded Batch (CPU) and each sample's media token count."""
        feats = [
            None if c.waveform is None else audio_features(c.waveform, self.cfg.media.beats_fp16_waveform)
            for c in clips
        ]
        counts = [
            media_token_count(
                self.cfg.connector,
                0 if c.frames is None else c.frames.shape[0],
                c.is_image,
                0 if f is None else f.mel.shape[0],
            )
            for c, f in zip(clips, feats)
        ]
        prompts: list[EncodedPrompt] = [
            encode_conversation(r.turns(), self.style, self.tokenizer, n, self.cfg.llm.max_text_tokens)
            for r, n in zip(requests, counts)
        ]
        instructions = [request.turns()[0].text for request in requests]
        ids, mask = self.instruction_tokenizer(instructions)
        masks = [
            r.modality_mask or (float(c.frames is not None), float(f is not None))
            for r, c, f in zip(requests, clips, feats)
        ]
        media = collate_media([c.frames for c in clips], [c.is_image for c in clips], feats, ids, mask, masks)
        prompt = collate_prompts(prompts, self.tokenizer.pad_id, side)
        return Batch(media, prompt, [c.coverage for c in clips]), counts


def _until_eos(ids: list[int], eos_id: int) -> list[int]:
    return ids[: ids.index(eos_id)] if eos_id in ids else ids
