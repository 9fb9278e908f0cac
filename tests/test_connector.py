"""Synchronisation and the MRC Q-Former: shapes, token counts, causality, window locality, batching."""

import dataclasses

import pytest
import torch

from videosalmonn.config import ConnectorConfig, ResolutionLevel
from videosalmonn.connector import multires
from videosalmonn.connector.multires import MultiResolutionConnector, media_token_count
from videosalmonn.connector.qformer import block_causal_mask
from videosalmonn.errors import InputError
from videosalmonn.evaluation.diagnostics import zeroed_levels
from videosalmonn.types import AVFeatures

Q, DV, DW, DB, E = 32, 16, 12, 10, 24  # visual tokens per frame, widths, LLM width


def connector(**kw) -> MultiResolutionConnector:
    cfg = ConnectorConfig(width=16, num_heads=4, mlp_width=32, **kw)
    return MultiResolutionConnector(cfg, DV, Q, DW, DB, E).eval()


def features(
    frames: list[int], chunks: list[int], image: list[bool] | None = None, mask=None, slots: list[int] | None = None
) -> AVFeatures:
    """Random encoder outputs of C*1500 audio rows; `slots`: the audio's own (default: official, 60 per chunk)."""
    b = len(frames)
    slots = slots or [60 * k for k in chunks]
    g = torch.Generator().manual_seed(1)
    tv, c = max(frames), max(chunks)
    visual = torch.randn(b, tv, Q, DV, generator=g)
    whisper = torch.randn(b, c * 1500, DW, generator=g)
    beats = torch.randn(b, c * 1500, DB, generator=g)
    for i, (n, k) in enumerate(zip(frames, slots)):  # padding is zeros, as the encoders give it
        visual[i, n:] = 0
        whisper[i, k * 25 :] = 0
        beats[i, k * 25 :] = 0
    modality = mask or [(float(n > 0), float(k > 0)) for n, k in zip(frames, chunks)]
    return AVFeatures(
        visual,
        torch.tensor(frames),
        torch.tensor(image or [False] * b),
        whisper,
        beats,
        torch.tensor(slots),
        torch.tensor(modality),
    )


def one(f: AVFeatures, i: int) -> AVFeatures:
    n, k = int(f.visual_slots[i]), int(f.audio_slots[i])
    return AVFeatures(
        f.visual[i : i + 1, :n],
        f.visual_slots[i : i + 1],
        f.is_image[i : i + 1],
        f.whisper[i : i + 1, : k * 25],
        f.beats[i : i + 1, : k * 25],
        f.audio_slots[i : i + 1],
        f.modality_mask[i : i + 1],
    )


@pytest.mark.parametrize(
    "frames, chunks, image, tokens",
    [
        (48, 1, False, 180),  # video + a 30-s chunk of audio slots (official padding), spec §3.3
        (48, 0, False, 150),  # video only: 48 slots padded to 50 (masked)
        (1, 1, True, 180),  # image + audio: image repeated over the 60 audio slots
        (1, 0, True, 180),  # image alone: repeated 60 times (official)
        (1, 2, True, 360),  # image + 60 s of audio
        (0, 1, False, 180),  # audio only
        (0, 2, False, 360),  # 60 s of audio (two Whisper chunks)
        (130, 1, False, 390),  # 65 s of video, 30 s of audio: every video window kept
    ],
)
def test_token_counts(frames, chunks, image, tokens):
    conn = connector()
    out = conn(features([frames], [chunks], [image]))
    assert out.lengths.tolist() == [tokens]
    assert out.embeds.shape == (1, tokens, E)
    assert media_token_count(conn.cfg, frames, image, chunks * 60) == tokens


@pytest.mark.parametrize(
    "frames, chunks, slots, image, tokens",
    [
        (0, 1, 10, False, 30),  # a 5-s clip: its own 10 slots (180 tokens with the official 60)
        (10, 1, 10, False, 30),  # 5 s of video and audio
        (48, 1, 10, False, 150),  # 23.7 s of video, 5 s of audio: the video sets the length
        (4, 1, 47, False, 150),  # 23.5 s of audio (47 slots, padded to 50) next to 2 s of video
        (1, 1, 10, True, 180),  # image + 5 s of audio: the image still fills its 60 slots
        (0, 1, 60, False, 180),  # exactly 30 s
        (0, 2, 62, False, 210),  # 31 s: two chunks, 62 slots (official: 120 slots, 360 tokens)
    ],
)
def test_token_counts_follow_the_audio_slots(frames, chunks, slots, image, tokens):
    """Default `media.limits`: the audio fills its own 0.5-s slots; frames past them change nothing."""
    conn = connector()
    f = features([frames], [chunks], [image], slots=[slots])
    out = conn(f)
    assert out.lengths.tolist() == [tokens] and out.embeds.shape == (1, tokens, E)
    assert media_token_count(conn.cfg, frames, image, slots) == tokens
    noisy = dataclasses.replace(f, whisper=f.whisper.clone(), beats=f.beats.clone())
    noisy.whisper[:, slots * 25 :] = 1.0  # what the Whisper encoder gives for the zero padding past the audio
    noisy.beats[:, slots * 25 :] = 1.0
    trimmed = dataclasses.replace(f, whisper=f.whisper[:, : slots * 25], beats=f.beats[:, : slots * 25])
    with torch.no_grad():
        for other in (noisy, trimmed):  # the encoder's layout (the batch's own slots) gives the same tokens
            torch.testing.assert_close(conn(other).embeds, out.embeds)


@pytest.mark.parametrize("slots", [None, [10, 0, 62, 60]])  # official chunk padding / the audio's own slots
def test_batch_equals_one_by_one(slots):
    conn = connector()
    f = features([48, 7, 1, 0], [1, 0, 2, 1], [False, False, True, False], slots=slots)
    with torch.no_grad():
        out = conn(f)
        for i in range(4):
            alone = conn(one(f, i))
            n = int(alone.lengths[0])
            assert out.lengths[i] == n
            torch.testing.assert_close(out.embeds[i, :n], alone.embeds[0], atol=2e-5, rtol=1e-5)


def test_modality_mask_zeroes_a_present_stream():
    conn = connector()
    f = features([20], [1], mask=[(1.0, 0.0)])
    x, slot_mask, padded = conn.sync(f)
    assert x.shape == (1, 60, Q, 3 * DV) and padded.tolist() == [60]
    assert x[..., DV:].abs().sum() == 0 and x[0, :20, :, :DV].abs().sum() > 0
    assert slot_mask.sum() == 60  # slots past the video but inside the audio are attended


def test_sync_layout_pairs_query_k_with_audio_frame_25t_plus_k():
    conn = connector()
    f = features([4], [1])
    x, _, _ = conn.sync(f)
    audio = conn.sync.project_audio(f)  # (1, 1500, 2DV)
    t, k = 3, 7
    torch.testing.assert_close(x[0, t, k, :DV], f.visual[0, t, k])
    torch.testing.assert_close(x[0, t, k, DV:], audio[0, 25 * t + k])
    assert x[0, t, 25:, DV:].abs().sum() == 0  # 7 zero audio tokens per slot


def test_block_causal_mask_directions():
    future = block_causal_mask(3, 2, "future", torch.float32) == 0  # True = may attend
    past = block_causal_mask(3, 2, "past", torch.float32) == 0
    frames_future = future[::2, ::2]
    assert frames_future.tolist() == [[True, True, True], [False, True, True], [False, False, True]]
    assert past[::2, ::2].tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    assert future[0:2, 0:2].all()  # tokens of one frame see each other


@pytest.mark.parametrize("direction", ["future", "past"])
def test_causal_block_sees_only_allowed_frames(direction):
    """Changing frame j changes exactly the causal-block outputs of the frames allowed to see j."""
    conn = connector(causal=direction)
    block = conn.qformers[0].layers[0].causal
    frames, j = 6, 3
    x = torch.randn(1, frames * Q, 3 * DV)
    mask = block_causal_mask(frames, Q, direction, x.dtype)[None, None]
    with torch.no_grad():
        base = block(x, x, mask).view(frames, Q, -1)
        y = x.clone()
        y[0, j * Q : (j + 1) * Q] += 1.0
        changed = (block(y, y, mask).view(frames, Q, -1) - base).abs().amax(dim=(1, 2)) > 1e-6
    allowed = [i <= j if direction == "future" else i >= j for i in range(frames)]
    assert changed.tolist() == allowed


def test_changing_a_frame_changes_only_its_windows():
    conn = connector()
    f = features([40], [0])
    j = 23
    with torch.no_grad():
        base = conn(f)
        f.visual[0, j] += 1.0
        new = conn(f)
    fine_changed = (new.levels[0] - base.levels[0]).abs().amax(dim=(2, 3))[0] > 1e-6  # (W0,)
    coarse_changed = (new.levels[1] - base.levels[1]).abs().amax(dim=(2, 3))[0] > 1e-6  # (W1,)
    assert fine_changed.nonzero().flatten().tolist() == [j]
    assert coarse_changed.nonzero().flatten().tolist() == [j // 10]
    tokens_changed = (new.embeds - base.embeds).abs().amax(dim=2)[0] > 1e-6
    assert tokens_changed.nonzero().flatten().tolist() == list(range(30 * (j // 10), 30 * (j // 10 + 1)))


def test_unshared_qformers_and_three_levels():
    conn = connector(
        share_qformer=False, levels=(ResolutionLevel(1, 3), ResolutionLevel(5, 15), ResolutionLevel(10, 30))
    )
    assert len(conn.qformers) == 3 and conn.proj.in_features == 3 * 16
    out = conn(features([12], [1]))
    assert out.embeds.shape == (1, 180, E) and [lv.shape[1] for lv in out.levels] == [60, 12, 6]


def test_causal_masks_and_level_qformers_are_fixed_at_construction(monkeypatch):
    conn = connector(share_qformer=False)
    assert conn.qformer_of_level == (0, 1) and connector().qformer_of_level == (0, 0)
    assert conn.causal_allowed_0.shape == (Q, Q) and conn.causal_allowed_1.shape == (10 * Q, 10 * Q)
    assert torch.equal(block_causal_mask(10, Q, "future", torch.float32) == 0, conn.causal_allowed_1)
    assert not [k for k in conn.state_dict() if "causal_allowed" in k]  # not weights: checkpoints unchanged
    assert connector().to(torch.bfloat16).causal_allowed_1.dtype == torch.bool  # a mask in every dtype
    monkeypatch.setattr(multires, "block_causal_allowed", None)  # forward builds no mask
    assert conn(features([12], [1])).embeds.shape == (1, 180, E)
    assert connector(causal="none").causal_allowed_1 is None


def test_no_causal_block():
    conn = connector(causal="none")
    assert conn.qformers[0].layers[0].causal is None
    assert conn(features([10], [0])).embeds.shape == (1, 30, E)


def test_zero_levels_diagnostic():
    """Paper Table 5: an evaluation-time hook zeroes one level's output before the projection, then goes."""
    conn = connector()
    f = features([20], [1])
    with torch.no_grad():
        a = conn(f)
        with zeroed_levels(conn, [0]):
            b = conn(f)
        after = conn(f)
        expected = conn.proj(
            torch.cat([torch.zeros_like(a.levels[0].reshape(1, -1, 16)), a.levels[1].reshape(1, -1, 16)], dim=-1)
        )
        with zeroed_levels(conn, [-1]):  # the coarse level, from the end
            coarse = conn(f)
    torch.testing.assert_close(a.levels[0], b.levels[0])  # still computed, then zeroed
    fine_only = conn.proj.weight[:, :16]
    torch.testing.assert_close(b.embeds, expected)
    assert fine_only.abs().sum() > 0 and not torch.allclose(a.embeds, b.embeds)
    assert torch.equal(after.embeds, a.embeds)  # the hook is removed on leaving
    torch.testing.assert_close(
        coarse.embeds, conn.proj(torch.cat([a.levels[0].reshape(1, -1, 16), torch.zeros(1, 180, 16)], dim=-1))
    )
    with pytest.raises(InputError, match=r"zero level\(s\) \[2\]: the connector has 2 levels"):
        with zeroed_levels(conn, [2]):
            pass
    with zeroed_levels(conn, []), pytest.raises(InputError, match="already has levels"), zeroed_levels(conn, [1]):
        pass
