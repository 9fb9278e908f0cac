"""BEATs port (videosalmonn.encoders.beats) against the official golden outputs, plus tiny random-model checks."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from conftest import GOLDEN, TINY_BEATS_OFFICIAL, needs_golden

from videosalmonn.config import BEATsConfig
from videosalmonn.encoders.beats import BEATs, beats_config_from_official, load_beats, load_beats_weights
from videosalmonn.errors import CheckpointError
from videosalmonn.media.audio import load_audio
from videosalmonn.media.features import audio_features
from videosalmonn.media.timeline import WHISPER_CHUNK_SAMPLES
from videosalmonn.weights import load_pickle

CKPT = GOLDEN / "ckpt" / "pretrained_ckpt" / "BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt"
TOLERANCE = 1e-4
CASES = {"av": "4405327307.wav", "audioimage": "1272-128104-0000.flac"}
TINY = BEATsConfig(patch_dim=32, width=80, depth=2, num_heads=4, mlp_width=160)


@pytest.fixture(scope="module")
def golden_beats():
    if not CKPT.is_file():
        pytest.skip(f"golden BEATs checkpoint not found at {CKPT}")
    return load_beats(CKPT)


@needs_golden
def test_config_from_official_cfg(golden_beats):
    _, cfg = golden_beats
    assert cfg == BEATsConfig(
        patch_dim=32,
        width=80,
        depth=2,
        num_heads=4,
        mlp_width=160,
        conv_pos=128,
        conv_pos_groups=16,
        num_buckets=320,
        max_distance=800,
        deep_norm=True,
        gru_rel_pos=True,
        conv_bias=False,
    )
    with pytest.raises(CheckpointError, match="relative_position_embedding"):
        beats_config_from_official({"input_patch_size": 16})  # official defaults: no rel-pos


@needs_golden
@pytest.mark.parametrize("case", list(CASES))
def test_isolated_matches_golden(case, golden_beats, golden_tensors):
    model, _ = golden_beats
    golden = golden_tensors(case)
    with torch.no_grad():
        out = model(golden["beats_fbank"])
    assert out.shape == golden["beats_out"].shape
    assert (out - golden["beats_out"]).abs().max().item() <= TOLERANCE


@needs_golden
@pytest.mark.parametrize("case", list(CASES))
def test_end_to_end_from_media(case, golden_beats, golden_tensors):
    model, _ = golden_beats
    samples = load_audio(GOLDEN / "media" / CASES[case], channels="first").samples
    fbank = audio_features(samples[:WHISPER_CHUNK_SAMPLES], chunk_padding=True).fbank[0]
    with torch.no_grad():
        out = model(fbank[None])
    assert (out - golden_tensors(case)["beats_out"]).abs().max().item() <= TOLERANCE


@needs_golden
def test_official_state_dict_coverage():
    sd = load_pickle(CKPT)["model"]
    model = BEATs(TINY)
    assert model.load_official_state_dict(dict(sd)) == ["predictor.bias", "predictor.weight"]
    missing = {k: v for k, v in sd.items() if k != "encoder.layers.1.fc1.bias"}
    with pytest.raises(CheckpointError, match="missing"):
        BEATs(TINY).load_official_state_dict(missing)
    with pytest.raises(CheckpointError, match="unexpected"):
        BEATs(TINY).load_official_state_dict({**sd, "encoder.extra.weight": torch.zeros(1)})
    folded = model.encoder.pos_conv.weight
    v, g = sd["encoder.pos_conv.0.weight_v"], sd["encoder.pos_conv.0.weight_g"]
    assert torch.allclose(folded, g * v / v.norm(dim=(0, 1), keepdim=True), atol=1e-6)


def test_pre_ln_checkpoint_is_rejected_at_load(tmp_path):
    """`layer_norm_first=True` (pre-LN) is not ported: such a checkpoint fails with one line naming the file."""
    cfg = {**TINY_BEATS_OFFICIAL, "layer_norm_first": False}
    state = BEATs(TINY).state_dict()
    post_ln, pre_ln = tmp_path / "post_ln.pt", tmp_path / "pre_ln.pt"
    torch.save({"cfg": cfg, "model": state}, post_ln)
    torch.save({"cfg": {**cfg, "layer_norm_first": True, "deep_norm": False}, "model": state}, pre_ln)
    model, loaded_cfg = load_beats(post_ln)
    assert loaded_cfg == TINY and torch.equal(model.encoder.pos_conv.weight, state["encoder.pos_conv.weight"])
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(pre_ln))}: .*layer_norm_first True") as err:
        load_beats(pre_ln)
    assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="layer_norm_first True"):
        load_beats_weights(BEATs(TINY), pre_ln)


def test_tiny_random_forward_shapes():
    model = BEATs(TINY).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 300, 128))
    assert out.shape == (2, 8 * (300 // 16), 80)
    assert torch.isfinite(out).all()
    with pytest.raises(ValueError):
        model(torch.randn(1, 300, 64))


def test_padded_rows_equal_unpadded_forward():
    model = BEATs(TINY).eval()
    a, b = torch.randn(1, 320, 128), torch.randn(1, 200, 128)
    batch = torch.cat([a, F.pad(b, (0, 0, 0, 120))])
    with torch.no_grad():
        out = model(batch, lengths=torch.tensor([320, 200]))
        alone_a, alone_b = model(a), model(b)
    assert torch.allclose(out[0], alone_a[0], atol=1e-5)
    assert torch.allclose(out[1, : alone_b.shape[1]], alone_b[0], atol=1e-5)


def test_trainable_safe():
    model = BEATs(TINY).train()
    model(torch.randn(1, 64, 128)).square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())


@needs_golden
def test_load_into_module_built_from_config(golden_tensors):
    from videosalmonn.encoders.beats import load_beats_weights

    model = BEATs(TINY)
    assert load_beats_weights(model, CKPT) == ["predictor.bias", "predictor.weight"]
    golden = golden_tensors("audioimage")
    with torch.no_grad():
        out = model.eval()(golden["beats_fbank"])
    assert (out - golden["beats_out"]).abs().max().item() <= TOLERANCE
    with pytest.raises(CheckpointError, match="does not match"):
        load_beats_weights(BEATs(BEATsConfig(patch_dim=32, width=80, depth=3, num_heads=4, mlp_width=160)), CKPT)
