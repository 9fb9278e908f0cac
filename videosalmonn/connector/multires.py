"""The multi-resolution causal (MRC) Q-Former connector (paper §3.2, eq. 2-4; spec §4).

    AVFeatures ─► Synchroniser ─► X (B, T, 32, Din) ─► LayerNorm ─┬─ level 0: windows of 1 frame  (+pos 0..31)
                                                                    │    Q-Former, 3 queries/window  -> (B, T*3, D)
                                                                    └─ level 1: windows of 10 frames (+pos 0..319)
                                                                         Q-Former, 30 queries/window -> (B, T*3, D)
    concat per token (B, T*3, 2D) ─► Linear ─► (B, N, E) tokens for the LLM

Every level emits the same number of tokens (eq. 3), so LLM token j of coarse window g pairs fine window
10g + j//3 (query j%3) with coarse window g (query j): `Linear(cat[H_fine, H_coarse])` = W1 H1 + W2 H2 + b
(eq. 4 with one shared bias). All windows of all samples of a level go through the Q-Former in one call.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from videosalmonn.config import ConnectorConfig, check_connector_input
from videosalmonn.connector.qformer import CausalQFormer, additive_mask, block_causal_allowed
from videosalmonn.connector.sync import Synchroniser, slot_counts
from videosalmonn.media.timeline import SLOTS_PER_CHUNK
from videosalmonn.types import AVFeatures, ConnectorOutput


class MultiResolutionConnector(nn.Module):
    def __init__(
        self,
        cfg: ConnectorConfig,
        visual_width: int,
        tokens_per_frame: int,
        whisper_width: int,
        beats_width: int,
        llm_width: int,
    ):
        super().__init__()
        self.cfg = cfg
        self.tokens_per_frame = tokens_per_frame  # Q: visual tokens per frame (32)
        input_width = 3 * visual_width  # [visual | whisper | beats]
        check_connector_input(cfg, tokens_per_frame)
        self.sync = Synchroniser(visual_width, whisper_width, beats_width, cfg.image_slots, cfg.window_multiple)
        self.norm = nn.LayerNorm(input_width, eps=cfg.joint_norm_eps)
        self.position = nn.Embedding(cfg.max_positions, input_width)
        self.queries = nn.ParameterList(nn.Parameter(torch.randn(1, lv.queries, cfg.width) * 0.02) for lv in cfg.levels)
        n_qformers = 1 if cfg.share_qformer else len(cfg.levels)
        self.qformers = nn.ModuleList(
            CausalQFormer(
                cfg.width, input_width, cfg.depth, cfg.num_heads, cfg.mlp_width, cfg.eps, causal=cfg.causal != "none"
            )
            for _ in range(n_qformers)
        )
        self.qformer_of_level = tuple(0 if cfg.share_qformer else i for i in range(len(cfg.levels)))
        for i, lv in enumerate(cfg.levels):  # (K, K) True = may attend, K = frames x Q; None: no causal block
            allowed = None if cfg.causal == "none" else block_causal_allowed(lv.frames, tokens_per_frame, cfg.causal)
            self.register_buffer(f"causal_allowed_{i}", allowed, persistent=False)
        self.proj = nn.Linear(cfg.width * len(cfg.levels), llm_width)

    def forward(self, features: AVFeatures) -> ConnectorOutput:
        x, slot_mask, padded = self.sync(features)  # (B, T, Q, Din), (B, T), (B,)
        x = self.norm(x)
        levels = tuple(self.level(i, x, slot_mask) for i in range(len(self.cfg.levels)))
        b, t = slot_mask.shape
        tokens = torch.cat([h.reshape(b, -1, h.shape[-1]) for h in levels], dim=-1)  # (B, N, D*levels)
        lengths = padded // self.cfg.levels[0].frames * self.cfg.levels[0].queries
        window_mask = tuple(
            torch.arange(t // lv.frames, device=x.device)[None] < (padded // lv.frames)[:, None]
            for lv in self.cfg.levels
        )
        return ConnectorOutput(self.proj(tokens), lengths, levels, window_mask)

    def level(self, i: int, x: Tensor, slot_mask: Tensor) -> Tensor:
        """Q-Former outputs of level i: (B, W, Qi, D) for W = T / frames windows."""
        lv = self.cfg.levels[i]
        b, t, q, d = x.shape
        k = lv.frames * q  # tokens per window
        windows = x.reshape(b * t // lv.frames, k, d) + self.position.weight[:k]  # (B*W, K, Din)
        mask = slot_mask.repeat_interleave(q, dim=1).reshape(-1, k)  # (B*W, K)
        allowed = getattr(self, f"causal_allowed_{i}")
        causal = None if allowed is None else additive_mask(allowed, x.dtype)  # (K, K)
        qformer = self.qformers[self.qformer_of_level[i]]
        out = qformer(self.queries[i].expand(windows.shape[0], -1, -1), windows, mask, causal)  # (B*W, Qi, D)
        return out.view(b, t // lv.frames, lv.queries, -1)


def media_token_count(cfg: ConnectorConfig, frames: int, is_image: bool, audio_chunks: int) -> int:
    """How many tokens the connector gives the LLM for one sample (known before running any encoder)."""
    _, _, padded = slot_counts(
        torch.tensor([frames]),
        torch.tensor([is_image]),
        torch.tensor([audio_chunks * SLOTS_PER_CHUNK]),
        cfg.image_slots,
        cfg.window_multiple,
    )
    return int(padded) // cfg.levels[0].frames * cfg.levels[0].queries
