"""Whisper encoder: golden parity (fp32, official code on tiny weights), loaders, random construction, errors."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import GOLDEN, needs_golden
from safetensors.torch import save_file

from videosalmonn.config import ModelConfig, WhisperEncoderConfig
from videosalmonn.encoders.whisper import WhisperAudioEncoder, load_whisper_weights
from videosalmonn.errors import CheckpointError

ATOL = 1e-4
WHISPER_DIR = GOLDEN / "ckpt" / "hf" / "openai--whisper-large-v2"
GOLDEN_WHISPER = WhisperEncoderConfig(n_mels=80, width=96, depth=2, num_heads=4, mlp_width=192, max_positions=1500)
SMALL = WhisperEncoderConfig(n_mels=80, width=16, depth=1, num_heads=2, mlp_width=24, max_positions=50)


@pytest.fixture(scope="module")
def golden_encoder() -> WhisperAudioEncoder:
    if not GOLDEN.is_dir():
        pytest.skip(f"golden data not found at {GOLDEN}")
    enc = WhisperAudioEncoder(GOLDEN_WHISPER).eval()
    assert load_whisper_weights(enc, WHISPER_DIR) == []
    return enc


@needs_golden
@pytest.mark.parametrize("case", ["av", "audioimage"])
@torch.no_grad()
def test_whisper_matches_golden(case, golden_encoder, golden_tensors):
    t = golden_tensors(case)
    out = golden_encoder(t["whisper_logmel"][None])  # (1, 80, 3000) -> (1, 1500, 96)
    assert out.shape == t["whisper_encoder_out"].shape
    err = (out - t["whisper_encoder_out"]).abs().max().item()
    assert err <= ATOL, f"Whisper encoder ({case}) max abs error {err:.2e}"


def _save(sd: dict, root, config: dict | None = None):
    root.mkdir()
    save_file({k: v.contiguous() for k, v in sd.items()}, str(root / "model.safetensors"))
    if config is not None:
        (root / "config.json").write_text(json.dumps(config))


@torch.no_grad()
def test_loads_conditional_generation_prefix_and_skips_decoder(tmp_path):
    torch.manual_seed(1)
    src = WhisperAudioEncoder(SMALL).eval()
    sd = {f"model.encoder.{k}": v for k, v in src.encoder.state_dict().items()}
    sd["model.decoder.embed_tokens.weight"] = torch.zeros(4, 16)
    sd["proj_out.weight"] = torch.zeros(4, 16)
    _save(sd, tmp_path / "w", {"encoder_attention_heads": SMALL.num_heads})
    dst = WhisperAudioEncoder(SMALL).eval()
    load_whisper_weights(dst, tmp_path / "w")
    mel = torch.randn(2, 80, 100)
    assert torch.equal(src(mel), dst(mel))


def test_random_construction_shapes_and_determinism():
    torch.manual_seed(7)
    a = WhisperAudioEncoder(SMALL).eval()
    torch.manual_seed(7)
    b = WhisperAudioEncoder(SMALL).eval()
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert a.encoder.config._attn_implementation == "eager" and a.encoder.config.dropout == 0.0
    mel = torch.randn(2, 80, 100)
    with torch.no_grad():
        out = a(mel)
        assert out.shape == (2, 50, 16) and torch.equal(out, b(mel))


def test_tiny_preset_builds():
    cfg = ModelConfig.from_name("tiny").encoders.whisper
    enc = WhisperAudioEncoder(cfg).eval()
    with torch.no_grad():
        out = enc(torch.randn(1, cfg.n_mels, 2 * cfg.max_positions))
    assert out.shape == (1, cfg.max_positions, cfg.width) and torch.isfinite(out).all()


@needs_golden
def test_wrong_dims_is_a_checkpoint_error():
    wrong = WhisperAudioEncoder(WhisperEncoderConfig(width=64, depth=2, num_heads=4, mlp_width=192))
    with pytest.raises(CheckpointError, match=r"whisper-large-v2: dims differ.*width: checkpoint 96, config 64"):
        load_whisper_weights(wrong, WHISPER_DIR)
    heads = WhisperAudioEncoder(WhisperEncoderConfig(width=96, depth=2, num_heads=2, mlp_width=192))
    with pytest.raises(CheckpointError, match="num_heads: checkpoint 4, config 2"):
        load_whisper_weights(heads, WHISPER_DIR)


def test_loader_errors(tmp_path):
    enc = WhisperAudioEncoder(SMALL)
    with pytest.raises(CheckpointError, match=str(tmp_path / "missing")):
        load_whisper_weights(enc, tmp_path / "missing")
    _save({"decoder.embed_tokens.weight": torch.zeros(2, 2)}, tmp_path / "dec_only")
    with pytest.raises(CheckpointError, match="no Whisper encoder weights"):
        load_whisper_weights(enc, tmp_path / "dec_only")
    with pytest.raises(ValueError, match=r"\(N, 80, 100\)"):
        enc(torch.zeros(1, 80, 3000))
