"""Temporal synchronisation of the visual and audio streams (paper §3.1, spec §3: `sequence_align_v2`).

Every stream is put on the grid of 0.5-s slots and concatenated along the feature axis, token by token:

    slot t:   visual  [ q0  q1  ...  q24  q25 ... q31 ]   32 InstructBLIP queries of frame t      (Dv)
              whisper [ a0  a1  ...  a24   0  ...  0  ]   Whisper frames 25t .. 25t+24 (+7 zeros)  (Dv, projected)
              beats   [ b0  b1  ...  b24   0  ...  0  ]   BEATs tokens 25t .. 25t+24 (+7 zeros)    (Dv, projected)
    -> (B, T, 32, 3*Dv), feature order [visual | whisper | beats]

A sample's length is T_b = max(visual slots, audio slots): the shorter stream is zero-padded and those slots are
*attended* (official); slots added to reach a multiple of the coarsest window, and batch padding, are masked.
Audio slots are the audio's own, ceil(duration / 0.5 s): Whisper/BEATs frames past the end of the audio are
zeroed and no windows are made for them. With `media.limits: official` every started 30-s Whisper chunk counts
as 60 slots, as in the official code: a 5-s clip then fills 30 s of (attended) slots, its zero-padded audio.
An image fills max(image_slots, audio slots) slots. A missing stream is zeros; `modality_mask` multiplies
the visual and audio parts (0 masks a stream that is present, e.g. unpaired audio in mixed training).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from videosalmonn.media.timeline import AUDIO_FRAMES_PER_SLOT
from videosalmonn.types import AVFeatures


class Synchroniser(nn.Module):
    """AVFeatures -> joint slot tokens (B, T, Q, 3*Dv), slot mask (B, T), slots per sample (B,)."""

    def __init__(self, visual_width: int, whisper_width: int, beats_width: int, image_slots: int, multiple: int):
        super().__init__()
        self.whisper_proj = nn.Linear(whisper_width, visual_width)  # official speech_pre_qformer_proj
        self.beats_proj = nn.Linear(beats_width, visual_width)  # official beats_pre_qformer_proj
        self.image_slots = image_slots
        self.multiple = multiple

    def forward(self, f: AVFeatures, first: int = 0, count: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Slots [first, first + count) (default: all of them) -> x, slot_mask, padded (see `align`)."""
        rows = slice(first * AUDIO_FRAMES_PER_SLOT, None if count is None else (first + count) * AUDIO_FRAMES_PER_SLOT)
        audio = self.project_audio(f, rows)
        return self.align(f.visual, f.visual_slots, f.is_image, audio, f.audio_slots, f.modality_mask, first, count)

    def project_audio(self, f: AVFeatures, rows: slice = slice(None)) -> Tensor:
        """[whisper_proj(W) | beats_proj(B)] per 20-ms frame: (B, Ta*25, 2*Dv) (spec §3.1, official `audio_embeds`);
        `rows`: only those frames.

        BEATs rows zero-padded up to 1500 per chunk become the projection bias, as official."""
        return torch.cat([self.whisper_proj(f.whisper[:, rows]), self.beats_proj(f.beats[:, rows])], dim=-1)

    def align(
        self,
        visual: Tensor,
        visual_slots: Tensor,
        is_image: Tensor,
        audio: Tensor,
        audio_slots: Tensor,
        modality_mask: Tensor,
        first: int = 0,
        count: int | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """visual (B, Tv, Q, Dv), audio (B, rows, Da) from frame 25*first on -> x (B, count, Q, Dv+Da) of slots
        [first, first + count) (default count: up to T, the batch's padded length), slot_mask (B, count), padded
        slots (B,). Slots depend on nothing but their own frames: the spans of a long clip concatenate to its x."""
        b, _, q, dv = visual.shape
        visual_slots, own, padded = slot_counts(visual_slots, is_image, audio_slots, self.image_slots, self.multiple)
        count = int(padded.max()) - first if count is None else count
        slot = torch.arange(first, first + count, device=own.device)[None]  # (1, count)

        # visual: frame t of a video, frame 0 of an image; zeros past the sample's frames
        if visual.shape[1] == 0:
            visual = visual.new_zeros(b, count, q, dv)
        else:
            index = torch.where(is_image[:, None], torch.zeros_like(slot), slot).clamp(max=visual.shape[1] - 1)
            visual = torch.gather(visual, 1, index[:, :, None, None].expand(-1, -1, q, dv))  # (B, count, Q, Dv)
        visual = visual * (slot < visual_slots[:, None])[..., None, None]

        # audio: zero past the sample's audio, 25 frames per slot + zero tokens up to Q (Q >= 25: checked by the config)
        audio = audio[:, : count * AUDIO_FRAMES_PER_SLOT]  # past every sample's slots: would be zeroed anyway
        frame = first * AUDIO_FRAMES_PER_SLOT + torch.arange(audio.shape[1], device=audio.device)[None]
        audio = audio * (frame < audio_slots[:, None] * AUDIO_FRAMES_PER_SLOT)[..., None]
        ta = audio.shape[1] // AUDIO_FRAMES_PER_SLOT
        audio = audio.view(b, ta, AUDIO_FRAMES_PER_SLOT, audio.shape[-1])  # (B, Ta, 25, Da)
        audio = nn.functional.pad(audio, (0, 0, 0, q - AUDIO_FRAMES_PER_SLOT, 0, count - ta))  # (B, count, Q, Da)

        mask = modality_mask.to(visual.dtype)
        x = torch.cat([visual * mask[:, 0, None, None, None], audio * mask[:, 1, None, None, None]], dim=-1)
        slot_mask = (slot < own[:, None]).to(x.dtype)  # (B, count)
        return x, slot_mask, padded


def slot_counts(
    visual_slots: Tensor, is_image: Tensor, audio_slots: Tensor, image_slots: int, multiple: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Per sample (B,): visual slots (an image fills max(image_slots, audio)), own length T_b = max(visual, audio),
    and T_b rounded up to a multiple of the coarsest window (the extra slots are masked)."""
    visual_slots = torch.where(is_image, torch.clamp(audio_slots, min=image_slots), visual_slots)
    own = torch.maximum(visual_slots, audio_slots)
    padded = (own + multiple - 1) // multiple * multiple
    return visual_slots, own, padded
