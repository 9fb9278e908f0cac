"""Samples -> padded MediaBatch (encoder inputs of a batch)."""

from __future__ import annotations

import torch
from torch import Tensor

from videosalmonn.media.timeline import BEATS_N_MELS
from videosalmonn.types import AudioFeatures, AVFeatures, MediaBatch


def collate_media(
    frames: list[Tensor | None],
    is_image: list[bool],
    audio: list[AudioFeatures | None],
    instruction_ids: Tensor,
    instruction_mask: Tensor,
    modality_mask: list[tuple[float, float]] | None = None,
) -> MediaBatch:
    """Pad every stream to the batch's longest.

    frames: per sample (Tv, 3, S, S) or None; audio: per sample AudioFeatures or None;
    instruction ids/mask: (B, Li) from the instruction tokenizer; modality_mask: per sample [visual, audio]
    multipliers (default 1 for a present stream, 0 for an absent one).
    """
    b = len(frames)
    size = next((f.shape[-1] for f in frames if f is not None), 1)
    tv = max((f.shape[0] for f in frames if f is not None), default=0)
    out_frames = torch.zeros(b, tv, 3, size, size)
    frame_counts = torch.zeros(b, dtype=torch.long)
    for i, f in enumerate(frames):
        if f is not None:
            out_frames[i, : f.shape[0]] = f
            frame_counts[i] = f.shape[0]

    chunks = max((a.mel.shape[0] for a in audio if a is not None), default=0)
    n_mels = next((a.mel.shape[1] for a in audio if a is not None), 80)
    mel_frames = next((a.mel.shape[2] for a in audio if a is not None), 0)
    longest = max((x.shape[0] for a in audio if a is not None for x in a.fbank), default=0)
    mel = torch.zeros(b, chunks, n_mels, mel_frames)
    fbank = torch.zeros(b, chunks, longest, BEATS_N_MELS)
    fbank_lengths = torch.zeros(b, chunks, dtype=torch.long)
    audio_chunks = torch.zeros(b, dtype=torch.long)
    audio_slots = torch.zeros(b, dtype=torch.long)
    for i, a in enumerate(audio):
        if a is None:
            continue
        mel[i, : a.mel.shape[0]] = a.mel
        audio_chunks[i] = a.mel.shape[0]
        audio_slots[i] = a.slots
        for c, x in enumerate(a.fbank):
            fbank[i, c, : x.shape[0]] = x
            fbank_lengths[i, c] = x.shape[0]

    if modality_mask is None:
        modality_mask = [(float(f is not None), float(a is not None)) for f, a in zip(frames, audio)]
    return MediaBatch(
        out_frames,
        frame_counts,
        torch.tensor(is_image, dtype=torch.bool),
        mel,
        fbank,
        fbank_lengths,
        audio_chunks,
        audio_slots,
        torch.tensor(modality_mask, dtype=torch.float32),
        instruction_ids,
        instruction_mask,
    )


def stack_features(samples: list[AVFeatures], modality_mask: list[tuple[float, float]]) -> AVFeatures:
    """Encoder features of single samples (`AVEncoder.encode_sample`, batch of 1 each) -> one padded batch, the
    layout `AVEncoder` gives a MediaBatch: visual (B, Tv, Q, Dv), whisper / beats (B, Ta*25, D), zeros past each
    sample's own frames and slots; `modality_mask`: per sample [visual, audio] multipliers."""

    def pad(tensors: list[Tensor]) -> Tensor:  # each (1, n_i, ...) -> (B, max n_i, ...)
        out = tensors[0].new_zeros(len(tensors), max(t.shape[1] for t in tensors), *tensors[0].shape[2:])
        for i, t in enumerate(tensors):
            out[i, : t.shape[1]] = t[0]
        return out

    return AVFeatures(
        visual=pad([s.visual for s in samples]),
        visual_slots=torch.cat([s.visual_slots for s in samples]),
        is_image=torch.cat([s.is_image for s in samples]),
        whisper=pad([s.whisper for s in samples]),
        beats=pad([s.beats for s in samples]),
        audio_slots=torch.cat([s.audio_slots for s in samples]),
        modality_mask=torch.tensor(modality_mask, dtype=torch.float32),
    )
