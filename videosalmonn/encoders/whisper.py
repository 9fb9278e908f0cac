"""Whisper encoder (large-v2 in the released model): 30-s log-mel windows -> 50 Hz speech features (spec §2).

A thin wrapper of transformers' `WhisperEncoder` in eager attention with every dropout off, built from our
`WhisperEncoderConfig`. Official: `WhisperModel.from_pretrained("openai/whisper-large-v2").encoder`.

    mel (N, 80, 3000) ─► conv1 ─► GELU ─► conv2 (stride 2) ─► GELU ─► + positions
                      ─► pre-LN blocks ─► LayerNorm ─► (N, 1500, D)
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from torch import Tensor, nn
from transformers import WhisperConfig
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from videosalmonn.config import WhisperEncoderConfig
from videosalmonn.errors import CheckpointError
from videosalmonn.weights import load_checked, read_hf_config, read_state_dict

log = logging.getLogger(__name__)

CONV_STRIDE = 2  # conv2 halves the time axis: 3000 log-mel frames -> 1500 encoder frames
# WhisperModel / WhisperForConditionalGeneration checkpoints name the encoder differently.
ENCODER_PREFIXES = ("model.encoder.", "encoder.")


def whisper_config(cfg: WhisperEncoderConfig) -> WhisperConfig:
    return WhisperConfig(
        num_mel_bins=cfg.n_mels,
        d_model=cfg.width,
        encoder_layers=cfg.depth,
        encoder_attention_heads=cfg.num_heads,
        encoder_ffn_dim=cfg.mlp_width,
        max_source_positions=cfg.max_positions,
        activation_function="gelu",
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        encoder_layerdrop=0.0,
        scale_embedding=False,
        decoder_layers=1,
        decoder_attention_heads=cfg.num_heads,
        decoder_ffn_dim=cfg.mlp_width,
    )  # decoder unused


class WhisperAudioEncoder(nn.Module):
    """Whisper encoder: log-mel (N, n_mels, 2 * max_positions) -> (N, max_positions, D).

    Example:
        >>> enc = WhisperAudioEncoder(WhisperEncoderConfig(width=96, depth=2, num_heads=4, mlp_width=192))
        >>> enc(torch.zeros(1, 80, 3000)).shape
        torch.Size([1, 1500, 96])
    """

    def __init__(self, cfg: WhisperEncoderConfig):
        super().__init__()
        self.config = cfg
        self.width = cfg.width
        self.encoder = WhisperEncoder._from_config(whisper_config(cfg), attn_implementation="eager")

    def forward(self, mel: Tensor) -> Tensor:
        """mel (N, n_mels, 2 * max_positions) -> (N, max_positions, D)."""
        want = (self.config.n_mels, CONV_STRIDE * self.config.max_positions)
        if mel.dim() != 3 or tuple(mel.shape[1:]) != want:
            raise ValueError(f"Whisper log-mel must be (N, {want[0]}, {want[1]}), got {tuple(mel.shape)}")
        return self.encoder(input_features=mel.to(self.encoder.conv1.weight.dtype)).last_hidden_state


# ----------------------------------------------------------------------------------------------- loading


def load_whisper_weights(encoder: WhisperAudioEncoder, source: str | Path, **place) -> list[str]:
    """Load `encoder.*` (WhisperModel) or `model.encoder.*` (WhisperForConditionalGeneration) from an HF dir,
    file or hub id; the decoder is never loaded into the model. Returns known-unused keys (none).

    `place`: `device=`, `dtype=` for an encoder built empty (see `weights.load_checked`)."""
    hf_config = read_hf_config(source)  # also fails first, with one line, on a missing path
    errors = []
    for prefix in ENCODER_PREFIXES:
        try:
            sd = read_state_dict(source, prefix)
            break
        except CheckpointError as e:
            errors.append(str(e))
    else:
        raise CheckpointError(f"{source}: no Whisper encoder weights ({'; '.join(errors)})")
    check_dims(sd, encoder.config, str(source), hf_config)
    load_checked(encoder.encoder, sd, source=str(source), **place)
    log.info("Whisper encoder: loaded %s (%s*)", source, prefix)
    return []


def check_dims(sd: dict[str, Tensor], cfg: WhisperEncoderConfig, source: str, hf_config: dict | None = None):
    """Compare the dims of an encoder state dict (and config.json) with our config; one clear error."""
    found, expected = {}, {}
    if "conv1.weight" in sd:  # (D, n_mels, 3)
        found["encoders.whisper.width"], expected["encoders.whisper.width"] = sd["conv1.weight"].shape[0], cfg.width
        found["encoders.whisper.n_mels"], expected["encoders.whisper.n_mels"] = sd["conv1.weight"].shape[1], cfg.n_mels
    if "embed_positions.weight" in sd:  # (P, D)
        found["encoders.whisper.max_positions"] = sd["embed_positions.weight"].shape[0]
        expected["encoders.whisper.max_positions"] = cfg.max_positions
    if "layers.0.fc1.weight" in sd:  # (F, D)
        found["encoders.whisper.mlp_width"] = sd["layers.0.fc1.weight"].shape[0]
        expected["encoders.whisper.mlp_width"] = cfg.mlp_width
    found["encoders.whisper.depth"] = len({int(m.group(1)) for k in sd if (m := re.match(r"layers\.(\d+)\.", k))})
    expected["encoders.whisper.depth"] = cfg.depth
    if hf_config and "encoder_attention_heads" in hf_config:
        found["encoders.whisper.num_heads"] = hf_config["encoder_attention_heads"]
        expected["encoders.whisper.num_heads"] = cfg.num_heads
    bad = [
        f"{name}: checkpoint {found[name]}, config {expected[name]}" for name in found if found[name] != expected[name]
    ]
    if bad:
        raise CheckpointError(f"{source}: dims differ from the config: " + "; ".join(bad))
