"""Frozen-encoder features of one training sample, computed on the fly or read from the cache, and their collation.

    Example.visual + instruction ─► load_raw_visual (frames, BERT ids) ─────► RawVisual ─┐
    Example.audio ─► load_raw_audio (waveform -> Whisper log-mel, BEATs fbank) ─► RawAudio ─┴─► Featurizer
        ─► SampleFeatures: visual (Tv, Q, Dv), whisper / beats (Ta*25, D)       (or read from the feature cache)
    SampleFeatures x B ─► collate_features ─► AVFeatures (padded batch, the layout AVEncoder produces)

Each sample is encoded on its own (never padded together with others), so a sample's features do not depend on
what else is in its batch: the cached features and the on-the-fly ones are the same computation, bit for bit.
The audio keeps its own Ta slots, 25 encoder frames each (official chunk padding: Ta = C*60), so the row count says
how many slots it fills.
Decoding (`load_raw_*`) is model-free and runs in DataLoader workers; `Featurizer` runs the frozen towers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from videosalmonn.collate import collate_media
from videosalmonn.config import ModelConfig
from videosalmonn.encoders.audio_visual import AVEncoder
from videosalmonn.media.clip import image_frames, load_clip
from videosalmonn.media.features import audio_features
from videosalmonn.media.timeline import AUDIO_FRAMES_PER_SLOT
from videosalmonn.prompting.instruction import InstructionTokenizer
from videosalmonn.training.mixing import MediaRef
from videosalmonn.types import AudioFeatures, AVFeatures


@dataclass
class RawVisual:
    """Decoded frames + the tokenised instruction: the visual encoder's inputs for one sample."""

    frames: Tensor  # (Tv, 3, S, S) CLIP-normalised; an image is one frame (with image spotlight: grid^2 frames)
    is_image: bool  # the clip's own flag: False for a spotlighted image (a video of its sub-images)
    instruction_ids: Tensor  # (1, Li) BERT ids
    instruction_mask: Tensor  # (1, Li)


@dataclass
class RawAudio:
    """Whisper log-mel and BEATs fbank of one sample's audio: the audio encoders' inputs."""

    features: AudioFeatures  # mel (C, 80, 3000), fbank C x (F_c, 128), slots


@dataclass
class SampleFeatures:
    """Frozen-encoder outputs of one sample (no batch axis)."""

    visual: Tensor | None  # (Tv, Q, Dv) InstructBLIP query outputs
    is_image: bool  # as the model sees it (`clip_is_image`), not the manifest's kind
    whisper: Tensor | None  # (Ta*25, Dw): the audio's own Ta slots (official: Ta = C*60)
    beats: Tensor | None  # (Ta*25, Db)

    @property
    def frames(self) -> int:
        return 0 if self.visual is None else self.visual.shape[0]

    @property
    def audio_slots(self) -> int:
        return 0 if self.whisper is None else self.whisper.shape[0] // AUDIO_FRAMES_PER_SLOT


def clip_is_image(cfg: ModelConfig, is_image: bool) -> bool:
    """The `is_image` flag the model gets for a sample whose visual file is an image (`is_image`, the manifest's
    kind) or a video: what `load_clip` returns. With `media.image_spotlight` an image is a video of its sub-images,
    so False; the cached path uses this, the on-the-fly path the clip's own flag (the same)."""
    return is_image and image_frames(cfg.media)[1]


def load_raw_visual(
    cfg: ModelConfig, ref: MediaRef, is_image: bool, instruction: str, tokenizer: InstructionTokenizer
) -> RawVisual:
    """`is_image`: the file is an image (the manifest's kind); the RawVisual carries the clip's own flag."""
    clip = (
        load_clip(cfg.media, image=ref.path)
        if is_image
        else load_clip(cfg.media, video=ref.path, start=ref.start, end=ref.end, video_audio=False)
    )
    ids, mask = tokenizer([instruction])
    return RawVisual(clip.frames, clip.is_image, ids, mask)


def load_raw_audio(cfg: ModelConfig, ref: MediaRef) -> RawAudio:
    """An audio file, or a video's own audio track (`load_clip` reads the audio stream of any container)."""
    clip = load_clip(cfg.media, audio=ref.path, start=ref.start, end=ref.end)
    padding = cfg.media.limits == "official"
    return RawAudio(audio_features(clip.waveform, cfg.media.beats_fp16_waveform, chunk_padding=padding))


class Featurizer:
    """Runs the frozen towers on one sample's raw inputs (no grad, eval mode, inputs in the encoders' dtype)."""

    def __init__(self, encoder: AVEncoder, device: torch.device, dtype: torch.dtype):
        self.encoder = encoder.eval()
        self.device = device
        self.dtype = dtype

    @torch.no_grad()
    def visual(self, raw: RawVisual) -> Tensor:
        """-> (Tv, Q, Dv)."""
        media = collate_media([raw.frames], [raw.is_image], [None], raw.instruction_ids, raw.instruction_mask)
        return self.encoder.encode_frames(media.to(self.device, self.dtype))[0]

    @torch.no_grad()
    def audio(self, raw: RawAudio) -> tuple[Tensor, Tensor]:
        """-> whisper (Ta*25, Dw), beats (Ta*25, Db): the audio's own slots."""
        no_text = torch.zeros(1, 1, dtype=torch.long)
        media = collate_media([None], [False], [raw.features], no_text, no_text).to(self.device, self.dtype)
        return self.encoder.encode_whisper(media)[0], self.encoder.encode_beats(media)[0]


def collate_features(samples: list[SampleFeatures], masks: list[tuple[float, float]], cfg: ModelConfig) -> AVFeatures:
    """Pad per-sample features into the batch layout `AVEncoder` produces (zeros past each sample's length)."""
    b = len(samples)
    q, dv = cfg.encoders.image_qformer.num_queries, cfg.encoders.image_qformer.width
    dw, db = cfg.encoders.whisper.width, cfg.encoders.beats.width
    present = [t for s in samples for t in (s.visual, s.whisper) if t is not None]
    dtype = present[0].dtype if present else torch.float32
    tv = max(s.frames for s in samples)
    ta = max(s.audio_slots for s in samples) * AUDIO_FRAMES_PER_SLOT
    visual = torch.zeros(b, tv, q, dv, dtype=dtype)  # (B, Tv, Q, Dv)
    whisper = torch.zeros(b, ta, dw, dtype=dtype)  # (B, Ta*25, Dw)
    beats = torch.zeros(b, ta, db, dtype=dtype)  # (B, Ta*25, Db)
    for i, s in enumerate(samples):
        if s.visual is not None:
            visual[i, : s.frames] = s.visual
        if s.whisper is not None:
            whisper[i, : s.whisper.shape[0]] = s.whisper
            beats[i, : s.beats.shape[0]] = s.beats
    return AVFeatures(
        visual=visual,
        visual_slots=torch.tensor([s.frames for s in samples], dtype=torch.long),
        is_image=torch.tensor([s.is_image for s in samples], dtype=torch.bool),
        whisper=whisper,
        beats=beats,
        audio_slots=torch.tensor([s.audio_slots for s in samples], dtype=torch.long),
        modality_mask=torch.tensor(masks, dtype=torch.float32),
    )
