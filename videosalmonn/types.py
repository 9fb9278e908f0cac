"""Stage-boundary values. Data flows one way:

    Request (a conversation + media files)
    files --media/--> MediaClip --features+collate--> MediaBatch --encoders/--> AVFeatures
          --connector/--> ConnectorOutput --splice into PromptBatch embeddings--> LLM --> text

Letters used in shapes everywhere: B batch, T 0.5-s slots, Tv video frames, Ta audio slots, C 30-s audio chunks,
Q queries/tokens per frame, D widths, N media tokens given to the LLM, L text+media sequence length.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from torch import Tensor


@dataclass(frozen=True)
class Turn:
    role: Literal["system", "user", "assistant"]  # a system turn only first (the prompt layout places it)
    text: str


@dataclass(frozen=True)
class Request:
    """One question about one piece of media. `prompt` is a question or a whole conversation (user first;
    ending on a user turn). `answer` (training/scoring only) is the assistant reply to learn."""

    prompt: str | tuple[Turn, ...]
    video: str | None = None
    audio: str | None = None
    image: str | None = None
    answer: str | None = None
    start: float | None = None  # seconds: use only [start, end) of the video/audio
    end: float | None = None
    video_audio: bool = True  # use the video's own audio track when no audio file is given
    modality_mask: tuple[float, float] | None = None
    """Multipliers of the [visual, audio] streams (default: 1 if present); (1, 0) masks the audio."""

    def turns(self) -> list[Turn]:
        turns = [Turn("user", self.prompt)] if isinstance(self.prompt, str) else list(self.prompt)
        return turns + ([Turn("assistant", self.answer)] if self.answer is not None else [])


@dataclass
class Coverage:
    """What of a sample the model actually used; reported to the user, never hidden."""

    media_seconds: float | None = None  # duration of the longest input stream
    video_seconds: float | None = None  # span covered by the sampled frames (None: no video)
    audio_seconds: float | None = None  # span of audio given to the encoders (None: no audio)
    frames: int = 0  # video frames sampled (an image counts as 1)
    audio_present: bool = False
    cut: list[str] = field(default_factory=list)  # one line per thing dropped, e.g. "audio after 30.0 s"
    notes: list[str] = field(default_factory=list)  # anything else worth knowing (repeated frames, fallbacks)


@dataclass
class MediaClip:
    """One sample's decoded media on one timeline, or (long media: `Pipeline.load`) its frozen-encoder features,
    computed while decoding, instead of frames and waveform."""

    frames: Tensor | None  # (Tv, 3, S, S) float32, CLIP-normalised; an image is one frame
    is_image: bool
    waveform: Tensor | None  # (N,) float32, 16 kHz mono
    coverage: Coverage
    frame_times: list[float] = field(default_factory=list)  # presentation time of every sampled frame (s)
    features: AVFeatures | None = None  # the encoders' outputs (batch of 1) when encoded already; then no frames
    instruction: str | None = None  # the InstructBLIP instruction `features.visual` was computed with


@dataclass
class AudioFeatures:
    """Encoder inputs of one sample's audio, one row per 30-s chunk, and the 0.5-s slots the audio fills."""

    mel: Tensor  # (C, 80, 3000) Whisper log-mel
    fbank: list[Tensor]  # C x (F_c, 128) BEATs normalised Kaldi fbank
    slots: int  # the audio's own slots, at most C*60 (`timeline.audio_slots`; official: C*60)


@dataclass
class MediaBatch:
    """Padded encoder inputs of a batch."""

    frames: Tensor  # (B, Tv, 3, S, S); zeros past frame_counts
    frame_counts: Tensor  # (B,) long: valid frames (0 = no visual input)
    is_image: Tensor  # (B,) bool: the single frame is an image (repeated over the slots)
    mel: Tensor  # (B, C, 80, 3000); zeros past audio_chunks
    fbank: Tensor  # (B, C, F, 128); zeros past fbank_lengths
    fbank_lengths: Tensor  # (B, C) long: valid fbank frames of every chunk
    audio_chunks: Tensor  # (B,) long: 30-s chunks (0 = no audio input)
    audio_slots: Tensor  # (B,) long: 0.5-s slots of each sample's audio (AudioFeatures.slots; 0 = no audio)
    modality_mask: Tensor  # (B, 2) float: multiplies the [visual, audio] streams (spec §3.3)
    instruction_ids: Tensor  # (B, Li) BERT ids of the instruction given to InstructBLIP
    instruction_mask: Tensor  # (B, Li) long

    def to(self, device, dtype=None) -> MediaBatch:
        def move(t: Tensor) -> Tensor:
            t = t.to(device)
            return t.to(dtype) if dtype is not None and t.is_floating_point() else t

        return MediaBatch(**{k: move(v) for k, v in self.__dict__.items()})


@dataclass
class AVFeatures:
    """Frozen-encoder outputs, before synchronisation."""

    visual: Tensor  # (B, Tv, Q, Dv) InstructBLIP query outputs; zeros for padding
    visual_slots: Tensor  # (B,) long: frames per sample (an image: 1; none: 0)
    is_image: Tensor  # (B,) bool
    whisper: Tensor  # (B, Ta*25, Dw) Whisper encoder frames (50 Hz); zeros past audio_slots*25
    beats: Tensor  # (B, Ta*25, Db) BEATs tokens (zero-padded to 1500 per chunk); zeros past audio_slots*25
    audio_slots: Tensor  # (B,) long: 0.5-s slots of the audio (official: 60 per 30-s chunk); 0 = no audio
    modality_mask: Tensor  # (B, 2) float

    def to(self, device, dtype=None) -> AVFeatures:
        def move(t: Tensor) -> Tensor:
            t = t.to(device)
            return t.to(dtype) if dtype is not None and t.is_floating_point() else t

        return AVFeatures(**{k: move(v) for k, v in self.__dict__.items()})


@dataclass
class ConnectorOutput:
    """MRC Q-Former output projected to the LLM width."""

    embeds: Tensor  # (B, N, E); rows past `lengths` are padding
    lengths: Tensor  # (B,) long: media tokens of each sample
    levels: tuple[Tensor, ...]  # per level: (B, W_l, Q_l, D) Q-Former outputs before projection
    window_mask: tuple[Tensor, ...]  # per level: (B, W_l) bool, True for the sample's own windows


@dataclass
class PromptBatch:
    """Tokenised conversations with room for the media tokens."""

    input_ids: Tensor  # (B, L) long; media positions hold the pad id
    attention_mask: Tensor  # (B, L) long; left padding for generation
    media_mask: Tensor  # (B, L) bool: positions that receive connector tokens
    labels: Tensor | None = None  # (B, L) long; -100 where no loss
    alignment: Tensor | None = None  # (B, S) long: the alignment loss's targets, indices into alignment_vocab,
    # -100 padded (a row of -100: that sample has none)
    alignment_vocab: Tensor | None = None  # (C,) long: the LLM token ids its softmax ranges over, the blank first

    def to(self, device) -> PromptBatch:
        return PromptBatch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.media_mask.to(device),
            None if self.labels is None else self.labels.to(device),
            None if self.alignment is None else self.alignment.to(device),
            None if self.alignment_vocab is None else self.alignment_vocab.to(device),
        )


@dataclass
class Batch:
    """A model input: media (raw encoder inputs, or their frozen-encoder features when cached) + prompts."""

    media: MediaBatch | None
    prompt: PromptBatch
    coverage: list[Coverage] = field(default_factory=list)
    features: AVFeatures | None = None  # precomputed encoder outputs: the encoders are then skipped

    def to(self, device, dtype=None) -> Batch:
        """Move to `device`; float media inputs also to `dtype` (the model's compute dtype)."""
        return Batch(
            None if self.media is None else self.media.to(device, dtype),
            self.prompt.to(device),
            self.coverage,
            None if self.features is None else self.features.to(device, dtype),
        )


@dataclass
class ModelOutput:
    logits: Tensor | None  # (B, L, V); None when the LLM was skipped (loss.lm_weight 0)
    loss: Tensor | None = None  # lm_weight * ce + diversity_weight * diversity + alignment_weight * alignment
    ce_loss: Tensor | None = None
    diversity_loss: Tensor | None = None
    alignment_loss: Tensor | None = None
