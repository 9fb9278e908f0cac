"""BEATs audio encoder (iter3+, AS2M cpt2): patch embedding + deep-norm Transformer with gated relative positions.

Port of microsoft/unilm `beats/BEATs.py` and `beats/backbone.py` (MIT License, Copyright (c) 2022 Microsoft;
itself based on fairseq, MIT), as used by video-SALMONN (`videosalmonn:model/beats/`). Written anew for this
package: only the inference path of `extract_features(feature_only=True)` is kept (no predictor head, no
quant-noise, no incremental state), in plain torch without in-place updates. The feature extraction
(`BEATs.preprocess`, Kaldi fbank) lives in `videosalmonn.media.features.beats_fbank`.

    fbank (B, F, 128)
      -> Conv2d 16x16/16 -> (B, T'*8, patch_dim), tokens time-major (index t*8 + f, T' = F // 16)
      -> LayerNorm -> post_extract_proj -> (B, N, width)
      -> x + GELU(pos_conv(x)) -> LayerNorm     (post-LN; a layer_norm_first=True checkpoint is rejected at load)
      -> depth x [x*alpha + attn(x) -> LN -> x*alpha + FFN(x) -> LN]     (deep norm, alpha = (2*depth)^(1/4))
    -> (B, N, width)

Differences from the original code, all numerically neutral in eval:
* `encoder.pos_conv` is a plain Conv1d: the official weight-norm parametrisation (`weight_g`, `weight_v`) is
  folded into one weight when an official state dict is loaded (`torch._weight_norm(v, g, 2)`, which is what
  the weight-norm hook computes before every forward). BEATs is frozen, so nothing trains through g and v.
* The relative position embedding the official code shares between layers (layer 0's module assigned to every
  layer) is one module `encoder.relative_attention_bias`.
* `layer_wise_gradient_decay_ratio` (a gradient-only GradMultiply) and layerdrop are training-time features of
  BEATs pre-training; they are not ported.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from videosalmonn.config import BEATsConfig
from videosalmonn.errors import CheckpointError
from videosalmonn.media.timeline import BEATS_N_MELS, BEATS_PATCH
from videosalmonn.weights import load_checked, load_pickle

logger = logging.getLogger(__name__)

FREQ_PATCHES = BEATS_N_MELS // BEATS_PATCH  # 8 frequency patches per time patch
ATTENTION_ALPHA = 32.0  # official fp16 trick: scores computed as (q/alpha)k, max-shifted
GATE_PARTS = 2  # grep_linear's 8 outputs -> 2 gates of 4 summed units
GATE_WIDTH = 8


# ------------------------------------------------------------------------------- relative positions


def relative_position_buckets(length: int, num_buckets: int, max_distance: int, device=None) -> Tensor:
    """(T, T) long bucket of (key - query) offsets, bidirectional T5-style (log-spaced beyond num_buckets/4)."""
    position = torch.arange(length, dtype=torch.long, device=device)
    offset = position[None, :] - position[:, None]  # (T, T) key - query
    half = num_buckets // 2
    buckets = (offset > 0).long() * half
    distance = offset.abs()
    max_exact = half // 2
    # clamp(min=1) only avoids log(0) where the exact branch is taken anyway
    log_ratio = torch.log(distance.clamp(min=1).float() / max_exact) / math.log(max_distance / max_exact)
    large = (max_exact + (log_ratio * (half - max_exact)).long()).clamp(max=half - 1)
    return buckets + torch.where(distance < max_exact, distance, large)


class RelativePositionBias(nn.Module):
    """Learned per-head bias of every (query, key) offset bucket, shared by all layers."""

    def __init__(self, num_buckets: int, max_distance: int, num_heads: int):
        super().__init__()
        self.num_buckets, self.max_distance = num_buckets, max_distance
        self.embedding = nn.Embedding(num_buckets, num_heads)

    def forward(self, length: int) -> Tensor:
        buckets = relative_position_buckets(length, self.num_buckets, self.max_distance, self.embedding.weight.device)
        return self.embedding(buckets).permute(2, 0, 1)  # (H, T, T)


# ---------------------------------------------------------------------------------------- attention


class GatedRelPosAttention(nn.Module):
    """Multi-head self-attention with a query-gated relative position bias (BEATs / WavLM `gru_rel_pos`).

    The bias of head h for query i is scaled by `g = a * (b * grep_a[h] - 1) + 2`, with gates
    (a, b) = sigmoid of grep_linear(q_i) summed in two groups of 4 units.
    """

    def __init__(self, width: int, num_heads: int, gated: bool):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, width // num_heads
        self.scaling = self.head_dim**-0.5
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)
        self.gated = gated
        if gated:
            self.grep_linear = nn.Linear(self.head_dim, GATE_WIDTH)
            self.grep_a = nn.Parameter(torch.ones(1, num_heads, 1, 1))

    def _heads(self, x: Tensor) -> Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, d)

    def _gate(self, q: Tensor) -> Tensor:
        """(B, H, T, d) unscaled queries -> (B, H, T, 1) multiplier of the position bias."""
        B, H, T, _ = q.shape
        units = self.grep_linear(q).view(B, H, T, GATE_PARTS, GATE_WIDTH // GATE_PARTS).sum(-1)
        gate_a, gate_b = torch.sigmoid(units).chunk(GATE_PARTS, dim=-1)  # (B, H, T, 1) each
        return gate_a * (gate_b * self.grep_a - 1.0) + 2.0

    def forward(self, x: Tensor, position_bias: Tensor, key_padding: Tensor | None) -> Tensor:
        """x (B, T, D), position_bias (H, T, T), key_padding (B, T) bool (True = padding) -> (B, T, D)."""
        q = self._heads(self.q_proj(x))  # (B, H, T, d)
        k = self._heads(self.k_proj(x))
        v = self._heads(self.v_proj(x))
        # official order: scale q by 1/(sqrt(d) * alpha), subtract the row max, multiply by alpha (fp16 range)
        scores = (q * (self.scaling / ATTENTION_ALPHA)) @ k.transpose(-1, -2)  # (B, H, T, T)
        scores = (scores - scores.amax(dim=-1, keepdim=True)) * ATTENTION_ALPHA
        bias = position_bias[None] * self._gate(q) if self.gated else position_bias[None]
        scores = scores + bias
        if key_padding is not None:
            scores = scores.masked_fill(key_padding[:, None, None, :], float("-inf"))
        out = torch.softmax(scores, dim=-1) @ v  # (B, H, T, d)
        return self.out_proj(out.transpose(1, 2).flatten(2))  # (B, T, D)


# ------------------------------------------------------------------------------------------- layers


def _gelu(x: Tensor) -> Tensor:
    """fairseq `gelu`: erf GELU computed in float32 (matters only in fp16)."""
    return F.gelu(x.float()).type_as(x)


class EncoderLayer(nn.Module):
    """Transformer layer: post-LN with deep-norm residual scaling (BEATs)."""

    def __init__(self, cfg: BEATsConfig):
        super().__init__()
        self.self_attn = GatedRelPosAttention(cfg.width, cfg.num_heads, cfg.gru_rel_pos)
        self.self_attn_layer_norm = nn.LayerNorm(cfg.width)
        self.fc1 = nn.Linear(cfg.width, cfg.mlp_width)
        self.fc2 = nn.Linear(cfg.mlp_width, cfg.width)
        self.final_layer_norm = nn.LayerNorm(cfg.width)
        self.residual_scale = math.pow(2 * cfg.depth, 1 / 4) if cfg.deep_norm else 1.0

    def forward(self, x: Tensor, position_bias: Tensor, key_padding: Tensor | None) -> Tensor:
        """x (B, T, D), position_bias (H, T, T), key_padding (B, T) bool or None -> (B, T, D)."""
        x = self.self_attn_layer_norm(x * self.residual_scale + self.self_attn(x, position_bias, key_padding))
        return self.final_layer_norm(x * self.residual_scale + self.fc2(_gelu(self.fc1(x))))


class BEATsEncoder(nn.Module):
    """Convolutional position embedding, then the Transformer layers (backbone.py `TransformerEncoder`)."""

    def __init__(self, cfg: BEATsConfig):
        super().__init__()
        self.conv_pos = cfg.conv_pos
        self.pos_conv = nn.Conv1d(
            cfg.width, cfg.width, kernel_size=cfg.conv_pos, padding=cfg.conv_pos // 2, groups=cfg.conv_pos_groups
        )
        self.relative_attention_bias = RelativePositionBias(cfg.num_buckets, cfg.max_distance, cfg.num_heads)
        self.layer_norm = nn.LayerNorm(cfg.width)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.depth))

    def _position_embedding(self, x: Tensor) -> Tensor:
        """(B, T, D) -> (B, T, D) GELU(grouped conv over time); an even kernel gives T+1 outputs, drop the last."""
        y = self.pos_conv(x.transpose(1, 2))  # (B, D, T + 1 if kernel even)
        if self.conv_pos % 2 == 0:
            y = y[:, :, :-1]  # fairseq SamePad
        return F.gelu(y).transpose(1, 2)

    def forward(self, x: Tensor, key_padding: Tensor | None = None) -> Tensor:
        """(B, T, D) tokens, key_padding (B, T) bool or None -> (B, T, D)."""
        if key_padding is not None:
            x = x.masked_fill(key_padding[..., None], 0.0)
        x = self.layer_norm(x + self._position_embedding(x))  # post-LN: before the layers
        position_bias = self.relative_attention_bias(x.shape[1])  # (H, T, T)
        for layer in self.layers:
            x = layer(x, position_bias, key_padding)
        return x


# -------------------------------------------------------------------------------------------- model


class BEATs(nn.Module):
    """BEATs feature extractor: normalised fbank (B, F, 128) -> tokens (B, 8*(F//16), width) at ~50 per second.

    Example:
        >>> model = BEATs(BEATsConfig(patch_dim=32, width=80, depth=2, num_heads=4, mlp_width=160)).eval()
        >>> model(torch.randn(1, 300, 128)).shape
        torch.Size([1, 144, 80])
    """

    def __init__(self, cfg: BEATsConfig):
        super().__init__()
        if cfg.width % cfg.num_heads:
            raise ValueError(f"BEATs width {cfg.width} is not divisible by num_heads {cfg.num_heads}")
        self.cfg = cfg
        self.patch_embedding = nn.Conv2d(
            1, cfg.patch_dim, kernel_size=BEATS_PATCH, stride=BEATS_PATCH, bias=cfg.conv_bias
        )
        self.layer_norm = nn.LayerNorm(cfg.patch_dim)
        # official: no projection when the widths agree (and then no `post_extract_proj.*` keys)
        self.post_extract_proj = nn.Linear(cfg.patch_dim, cfg.width) if cfg.patch_dim != cfg.width else nn.Identity()
        self.encoder = BEATsEncoder(cfg)
        _init_weights(self, cfg)

    @property
    def width(self) -> int:
        """Width of the output tokens."""
        return self.cfg.width

    def patchify(self, fbank: Tensor) -> Tensor:
        """(B, F, 128) -> (B, T'*8, patch_dim) patch embeddings, time-major (token t*8 + f)."""
        if fbank.dim() != 3 or fbank.shape[-1] != BEATS_N_MELS:
            raise ValueError(f"BEATs expects fbank (B, F, {BEATS_N_MELS}), got {tuple(fbank.shape)}")
        if fbank.shape[1] < BEATS_PATCH:
            raise ValueError(f"BEATs needs at least {BEATS_PATCH} fbank frames, got {fbank.shape[1]}")
        patches = self.patch_embedding(fbank.unsqueeze(1))  # (B, E, T', 8)
        return patches.flatten(2).transpose(1, 2)  # (B, T'*8, E)

    def forward(self, fbank: Tensor, lengths: Tensor | None = None) -> Tensor:
        """fbank (B, F, 128) normalised (`beats_fbank`); lengths (B,) valid frames per row, None = all valid.

        Returns (B, 8*(F//16), width). With `lengths`, tokens of time patches past a row's valid frames are
        zeroed before the position convolution and masked as attention keys (official padding-mask handling),
        so every row equals its unpadded forward; their own outputs are meaningless.
        """
        x = self.post_extract_proj(self.layer_norm(self.patchify(fbank)))  # (B, N, D)
        key_padding = None if lengths is None else self.token_padding(lengths, x.shape[1])
        return self.encoder(x, key_padding)

    @staticmethod
    def token_padding(lengths: Tensor, n_tokens: int) -> Tensor:
        """(B,) valid fbank frames -> (B, N) bool, True for tokens of time patches past the valid frames."""
        time_patch = torch.arange(n_tokens, device=lengths.device) // FREQ_PATCHES  # (N,)
        valid_patches = torch.div(lengths, BEATS_PATCH, rounding_mode="floor")  # (B,)
        return time_patch[None, :] >= valid_patches[:, None]

    def load_official_state_dict(
        self, state_dict: dict[str, Tensor], source: str = "BEATs state dict", **place
    ) -> list[str]:
        """Load an official BEATs `model` state dict (weight-norm pos_conv, shared relative bias, predictor).

        Returns the ignored keys (`predictor.*`, the finetuned AudioSet head that feature extraction never uses);
        any other missing, unexpected or mis-shaped key raises CheckpointError.
        """
        converted, ignored = convert_official_state_dict(state_dict, source)
        load_checked(self, converted, source=source, **place)
        return ignored


def _init_weights(model: BEATs, cfg: BEATsConfig):
    """Random init in the spirit of the official one (BERT normal(0.02), deep-norm xavier gains); only the tiny
    preset and tests use it, real runs load a checkpoint."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
    pos_conv = model.encoder.pos_conv
    nn.init.normal_(pos_conv.weight, std=math.sqrt(4 / (cfg.conv_pos * cfg.width)))
    nn.init.zeros_(pos_conv.bias)
    if cfg.deep_norm:
        beta = math.pow(8 * cfg.depth, -1 / 4)
        for layer in model.encoder.layers:
            attn = layer.self_attn
            for linear, gain in (
                (attn.q_proj, 1.0),
                (attn.k_proj, 1.0),
                (attn.v_proj, beta),
                (attn.out_proj, beta),
                (layer.fc1, beta),
                (layer.fc2, beta),
            ):
                nn.init.xavier_normal_(linear.weight, gain=gain)


# ------------------------------------------------------------------------------------------ loading

_IGNORED_PREFIXES = ("predictor.",)
_POS_CONV = "encoder.pos_conv.0."
_WEIGHT_NORM_DIM = 2  # official nn.utils.weight_norm(pos_conv, dim=2)
_REL_BIAS = "self_attn.relative_attention_bias.weight"

# Official `BEATsConfig` defaults (used for keys absent from a checkpoint's cfg dict).
_OFFICIAL_CFG_DEFAULTS = dict(
    input_patch_size=-1,
    embed_dim=512,
    conv_bias=False,
    encoder_layers=12,
    encoder_embed_dim=768,
    encoder_ffn_embed_dim=3072,
    encoder_attention_heads=12,
    activation_fn="gelu",
    layer_norm_first=False,
    deep_norm=False,
    conv_pos=128,
    conv_pos_groups=16,
    relative_position_embedding=False,
    num_buckets=320,
    max_distance=1280,
    gru_rel_pos=False,
)


def beats_config_from_official(cfg: dict) -> BEATsConfig:
    """The official checkpoint's `cfg` dict -> BEATsConfig (CheckpointError for variants this port lacks)."""
    c = {**_OFFICIAL_CFG_DEFAULTS, **cfg}
    unsupported = []
    if c["input_patch_size"] != BEATS_PATCH:
        unsupported.append(f"input_patch_size {c['input_patch_size']} (need {BEATS_PATCH})")
    if c["activation_fn"] != "gelu":
        unsupported.append(f"activation_fn {c['activation_fn']!r} (need 'gelu')")
    if not c["relative_position_embedding"]:
        unsupported.append("relative_position_embedding False")
    if c["layer_norm_first"]:
        unsupported.append("layer_norm_first True (the released iter3+ checkpoints are post-LN: False)")
    if unsupported:
        raise CheckpointError(f"BEATs cfg: unsupported variant: {', '.join(unsupported)}")
    return BEATsConfig(
        patch_dim=int(c["embed_dim"]),
        width=int(c["encoder_embed_dim"]),
        depth=int(c["encoder_layers"]),
        num_heads=int(c["encoder_attention_heads"]),
        mlp_width=int(c["encoder_ffn_embed_dim"]),
        conv_pos=int(c["conv_pos"]),
        conv_pos_groups=int(c["conv_pos_groups"]),
        num_buckets=int(c["num_buckets"]),
        max_distance=int(c["max_distance"]),
        deep_norm=bool(c["deep_norm"]),
        gru_rel_pos=bool(c["gru_rel_pos"]),
        conv_bias=bool(c["conv_bias"]),
    )


def convert_official_state_dict(sd: dict[str, Tensor], source: str) -> tuple[dict[str, Tensor], list[str]]:
    """Official BEATs key layout -> this module's: fold the weight norm, keep one relative bias table.

    Returns (converted state dict, ignored keys).
    """
    ignored = sorted(k for k in sd if k.startswith(_IGNORED_PREFIXES))
    out: dict[str, Tensor] = {}
    rel_bias: dict[str, Tensor] = {}
    for key, value in sd.items():
        if key.startswith(_IGNORED_PREFIXES):
            continue
        if key.startswith(_POS_CONV):
            continue  # handled below
        if key.startswith("encoder.layers.") and key.endswith(_REL_BIAS):
            rel_bias[key] = value
            continue
        out[key] = value
    out.update(_fold_pos_conv(sd, source))
    if rel_bias:
        first = next(iter(rel_bias.values()))
        if any(not torch.equal(first, v) for v in rel_bias.values()):
            raise CheckpointError(f"{source}: per-layer relative_attention_bias tables differ; BEATs shares one")
        out["encoder.relative_attention_bias.embedding.weight"] = first
    return out, ignored


def _fold_pos_conv(sd: dict[str, Tensor], source: str) -> dict[str, Tensor]:
    g, v = sd.get(_POS_CONV + "weight_g"), sd.get(_POS_CONV + "weight_v")
    out = {}
    if g is not None and v is not None:
        out["encoder.pos_conv.weight"] = torch._weight_norm(v.float(), g.float(), _WEIGHT_NORM_DIM).to(v.dtype)
    elif _POS_CONV + "weight" in sd:  # already folded
        out["encoder.pos_conv.weight"] = sd[_POS_CONV + "weight"]
    if _POS_CONV + "bias" in sd:
        out["encoder.pos_conv.bias"] = sd[_POS_CONV + "bias"]
    # other encoder.pos_conv.0.* keys would be silently lost: report them through load_checked
    for key in sd:
        if key.startswith(_POS_CONV) and key[len(_POS_CONV) :] not in ("weight_g", "weight_v", "weight", "bias"):
            out[key] = sd[key]
    return out


def read_official_checkpoint(path: str | Path) -> tuple[BEATsConfig, dict[str, Tensor]]:
    """(config, state dict) of an official checkpoint `{'cfg': dict, 'model': state_dict}`."""
    ckpt = load_pickle(path)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("cfg"), dict) or not isinstance(ckpt.get("model"), dict):
        raise CheckpointError(f"{path}: not an official BEATs checkpoint (expected a dict with 'cfg' and 'model')")
    try:
        cfg = beats_config_from_official(ckpt["cfg"])
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    return cfg, ckpt["model"]


def load_beats_weights(model: BEATs, path: str | Path, **place) -> list[str]:
    """Load an official checkpoint into an existing BEATs built from config; returns the ignored keys.

    The checkpoint's cfg must describe the same architecture as `model.cfg` (CheckpointError otherwise).
    `place`: `device=`, `dtype=` for a BEATs built empty (see `weights.load_checked`).
    """
    cfg, state_dict = read_official_checkpoint(path)
    if cfg != model.cfg:
        raise CheckpointError(f"{path}: BEATs cfg {cfg} does not match the model's {model.cfg}")
    return _load_logged(model, state_dict, path, **place)


def load_beats(path: str | Path) -> tuple[BEATs, BEATsConfig]:
    """Build BEATs from an official checkpoint `{'cfg': dict, 'model': state_dict}`; eval mode, fp32."""
    cfg, state_dict = read_official_checkpoint(path)
    model = BEATs(cfg)
    _load_logged(model, state_dict, path)
    return model.eval(), cfg


def _load_logged(model: BEATs, state_dict: dict[str, Tensor], path: str | Path, **place) -> list[str]:
    ignored = model.load_official_state_dict(state_dict, source=str(path), **place)
    if ignored:
        logger.info("%s: ignored %d unused key(s): %s", path, len(ignored), ", ".join(ignored))
    return ignored
