"""AVEncoder: the frozen towers, run under `no_grad` in this one place (paper §3, spec §2).

    frames (valid ones, in chunks) ─► EVA-ViT-g ─► ln_vision ─► InstructBLIP Q-Former (+instruction) ─► (B, Tv, 32, Dv)
    30-s log-mel chunks            ─► Whisper encoder                                   ─► (B, Ta*25, Dw)
    30-s fbank chunks              ─► BEATs ─► zero-pad each chunk to 1500 tokens       ─► (B, Ta*25, Db)

Padding never enters an encoder: only valid frames and chunks are encoded, chunks of equal length together, so a
sample gives the same features alone or in any batch. The audio outputs keep each sample's own slots (25 frames
each, `MediaBatch.audio_slots`), zeros past them, Ta = the batch's most; with official chunk padding Ta = C*60.

`encode_sample` takes one sample's inputs piece by piece instead (frame batches, audio windows: a long clip
decoded as it is encoded, `VideoStream.batches` / `features.audio_windows`): every encoder call gets the inputs
`forward` would give it, so the features are the same, and memory is that of one batch, whatever the length.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from videosalmonn.collate import collate_media
from videosalmonn.config import EncodersConfig
from videosalmonn.encoders.beats import BEATs
from videosalmonn.encoders.vision import VisualEncoder
from videosalmonn.encoders.whisper import WhisperAudioEncoder
from videosalmonn.media.timeline import AUDIO_FRAMES_PER_SLOT, WHISPER_FRAMES_PER_CHUNK
from videosalmonn.types import AudioFeatures, AVFeatures, MediaBatch


class AVEncoder(nn.Module):
    def __init__(self, cfg: EncodersConfig, image_size: int, frame_batch: int = 32, chunk_batch: int = 1):
        super().__init__()
        self.vision = VisualEncoder(cfg.eva, cfg.image_qformer, image_size)
        self.whisper = WhisperAudioEncoder(cfg.whisper)
        self.beats = BEATs(cfg.beats)
        self.frame_batch = frame_batch  # frames per EVA call: bounds memory on long videos
        self.chunk_batch = chunk_batch  # 30-s chunks per Whisper/BEATs call: one, as for a 30-s clip
        self.visual_width = cfg.image_qformer.width
        self.visual_tokens = cfg.image_qformer.num_queries
        self.use_instruction = cfg.image_qformer.use_instruction

    @torch.no_grad()
    def forward(self, media: MediaBatch) -> AVFeatures:
        return AVFeatures(
            visual=self.encode_frames(media),
            visual_slots=media.frame_counts,
            is_image=media.is_image,
            whisper=self.encode_whisper(media),
            beats=self.encode_beats(media),
            audio_slots=media.audio_slots,
            modality_mask=media.modality_mask,
        )

    def encode_frames(self, media: MediaBatch) -> Tensor:
        b, tv = media.frames.shape[:2]
        out = media.frames.new_zeros(b, tv, self.visual_tokens, self.visual_width)  # (B, Tv, Q, Dv)
        valid = torch.arange(tv, device=out.device)[None] < media.frame_counts[:, None]  # (B, Tv)
        if not valid.any():
            return out
        frames = media.frames[valid]  # (Nf, 3, S, S)
        ids = media.instruction_ids.repeat_interleave(media.frame_counts, dim=0)  # (Nf, Li)
        mask = media.instruction_mask.repeat_interleave(media.frame_counts, dim=0)
        chunks = []
        for i in range(0, len(frames), self.frame_batch):
            part = slice(i, i + self.frame_batch)
            text = (ids[part], mask[part]) if self.use_instruction else (None, None)
            chunks.append(self.vision(frames[part], *text))
        out[valid] = torch.cat(chunks).to(out.dtype)
        return out

    @torch.no_grad()
    def encode_sample(
        self,
        frames: Iterable[Tensor],
        is_image: bool,
        audio: Iterable[AudioFeatures],
        instruction_ids: Tensor,
        instruction_mask: Tensor,
    ) -> AVFeatures:
        """One sample's features (batch of 1), its inputs given piece by piece: `frames` in batches (t, 3, S, S) of
        `frame_batch` frames (the last may have fewer; none: no visual input), `audio` in windows of at most
        `chunk_batch` 30-s chunks (none: no audio); instruction ids/mask (1, Li). Equal to `forward` on the sample
        alone (collated on its own): the same encoder calls on the same inputs, in the model's device and dtype."""
        p = next(self.parameters())
        visual, n, short = [], 0, False
        for x in frames:  # (t, 3, S, S)
            if short or len(x) > self.frame_batch:
                raise ValueError(f"frame batches must hold {self.frame_batch} frames (the last may hold fewer)")
            short = len(x) < self.frame_batch
            text = (instruction_ids.repeat(len(x), 1), instruction_mask.repeat(len(x), 1))
            visual.append(self.vision(x.to(p.device, p.dtype), *(text if self.use_instruction else (None, None))))
            n += len(x)
        no_text = torch.zeros(1, 1, dtype=torch.long)
        whisper, beats, slots = [], [], 0
        for window in audio:
            if window.mel.shape[0] > self.chunk_batch:
                raise ValueError(f"audio windows must hold at most {self.chunk_batch} chunks")
            media = collate_media([None], [False], [window], no_text, no_text).to(p.device, p.dtype)
            whisper.append(self.encode_whisper(media))  # (1, slots*25, Dw)
            beats.append(self.encode_beats(media))
            slots += window.slots
        empty = p.new_zeros(1, 0, self.visual_tokens, self.visual_width)
        return AVFeatures(
            visual=torch.cat(visual)[None] if visual else empty,  # (1, Tv, Q, Dv)
            visual_slots=torch.tensor([n]),
            is_image=torch.tensor([is_image]),
            whisper=torch.cat(whisper, dim=1) if whisper else p.new_zeros(1, 0, self.whisper.width),
            beats=torch.cat(beats, dim=1) if beats else p.new_zeros(1, 0, self.beats.width),
            audio_slots=torch.tensor([slots]),
            modality_mask=torch.tensor([[float(n > 0), float(bool(whisper))]]),  # as collate_media's default
        )

    def encode_whisper(self, media: MediaBatch) -> Tensor:
        b, c = media.mel.shape[:2]
        valid = torch.arange(c, device=media.mel.device)[None] < media.audio_chunks[:, None]  # (B, C)
        out = media.mel.new_zeros(b, c, WHISPER_FRAMES_PER_CHUNK, self.whisper.width)
        if valid.any():
            mel = media.mel[valid]  # (Nc, 80, 3000)
            out[valid] = torch.cat(
                [self.whisper(mel[i : i + self.chunk_batch]) for i in range(0, len(mel), self.chunk_batch)]
            ).to(out.dtype)  # (Nc, 1500, Dw)
        return own_slots(out.view(b, c * WHISPER_FRAMES_PER_CHUNK, out.shape[-1]), media.audio_slots)

    def encode_beats(self, media: MediaBatch) -> Tensor:
        b, c = media.fbank.shape[:2]
        out = media.fbank.new_zeros(b, c, WHISPER_FRAMES_PER_CHUNK, self.beats.width)
        valid = torch.arange(c, device=media.fbank.device)[None] < media.audio_chunks[:, None]
        lengths = torch.where(valid, media.fbank_lengths, 0)
        for length in sorted(set(lengths[valid].tolist())):
            same = lengths == length  # (B, C)
            fbank = media.fbank[same][:, :length]  # (n, F, 128)
            tokens = torch.cat(
                [self.beats(fbank[i : i + self.chunk_batch]) for i in range(0, len(fbank), self.chunk_batch)]
            )  # (n, 8*(F//16), Db)
            out[same] = F.pad(tokens, (0, 0, 0, WHISPER_FRAMES_PER_CHUNK - tokens.shape[1])).to(out.dtype)
        return own_slots(out.view(b, c * WHISPER_FRAMES_PER_CHUNK, out.shape[-1]), media.audio_slots)


def own_slots(frames: Tensor, audio_slots: Tensor) -> Tensor:
    """(B, C*1500, D) -> (B, Ta*25, D), Ta = most audio slots: zeros past each sample's slots (official: as is)."""
    rows = int(audio_slots.max()) * AUDIO_FRAMES_PER_SLOT if len(audio_slots) else 0
    keep = torch.arange(rows, device=frames.device)[None] < audio_slots[:, None] * AUDIO_FRAMES_PER_SLOT  # (B, Ta*25)
    return frames[:, :rows].masked_fill(~keep[..., None], 0)
