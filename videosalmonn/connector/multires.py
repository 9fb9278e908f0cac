"""The multi-resolution causal (MRC) Q-Former connector (paper §3.2, eq. 2-4; spec §4).

    AVFeatures ─► Synchroniser ─► X (B, T, 32, Din) ─► LayerNorm ─┬─ level 0: windows of 1 frame  (+pos 0..31)
                                                                    │    Q-Former, 3 queries/window  -> (B, T*3, D)
                                                                    └─ level 1: windows of 10 frames (+pos 0..319)
                                                                         Q-Former, 30 queries/window -> (B, T*3, D)
    concat per token (B, T*3, 2D) ─► Linear ─► (B, N, E) tokens for the LLM

Every level emits the same number of tokens (eq. 3), so LLM token j of coarse window g pairs fine window
10g + j//3 (query j%3) with coarse window g (query j): `Linear(cat[H_fine, H_coarse])` = W1 H1 + W2 H2 + b
(eq. 4 with one shared bias). All windows of all samples of every level that shares a Q-Former go through it in
one `forward_levels` call: the causal block projects LN(X) once for all those levels (see `qformer`), and its
projected position rows are kept between calls while the weights do not change and no gradient is wanted.
`level(i, ...)` runs one level alone, exactly as the official code writes it (the reference for parity checks).
A clip longer than SPAN_SECONDS goes through in spans of whole windows of every level (`span`), one after the
other: the windows are independent, so the spans' tokens concatenate to the whole clip's, in bounded memory.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from videosalmonn.config import ConnectorConfig, check_connector_input
from videosalmonn.connector.qformer import (
    CausalQFormer,
    LevelWindows,
    additive_mask,
    block_causal_allowed,
    through_weights_is_cheaper,
)
from videosalmonn.connector.sync import Synchroniser, slot_counts
from videosalmonn.media.timeline import VIDEO_FPS
from videosalmonn.types import AVFeatures, ConnectorOutput

SPAN_SECONDS = 60  # `forward` runs a longer clip in spans of this many seconds (rounded up to whole windows)


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
        self.span_slots = math.ceil(SPAN_SECONDS * VIDEO_FPS / cfg.window_multiple) * cfg.window_multiple
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
        masked = []  # per level: does its causal block need a mask (a 1-frame window attends every pair)?
        for i, lv in enumerate(cfg.levels):  # (K, K) True = may attend, K = frames x Q; None: no causal block
            allowed = None if cfg.causal == "none" else block_causal_allowed(lv.frames, tokens_per_frame, cfg.causal)
            self.register_buffer(f"causal_allowed_{i}", allowed, persistent=False)
            masked.append(allowed is not None and lv.frames > 1)  # (not allowed.all(): a meta build has no values)
        self.causal_masked = tuple(masked)
        self.cross_through_weights = tuple(  # per level: the cheaper way to compute its cross-attention
            through_weights_is_cheaper(lv.queries, lv.frames * tokens_per_frame, cfg.width, input_width, cfg.num_heads)
            for lv in cfg.levels
        )
        # qformer index -> the levels it runs, in level order
        self.levels_of_qformer = tuple(
            tuple(i for i, j in enumerate(self.qformer_of_level) if j == q) for q in range(n_qformers)
        )
        self.proj = nn.Linear(cfg.width * len(cfg.levels), llm_width)
        self._positions_memo: dict[int, tuple[tuple, list]] = {}  # qformer -> (weights key, projected positions)

    def forward(self, features: AVFeatures) -> ConnectorOutput:
        _, _, padded = slot_counts(
            features.visual_slots,
            features.is_image,
            features.audio_slots,
            self.cfg.image_slots,
            self.cfg.window_multiple,
        )
        t = int(padded.max()) if len(padded) else 0
        spans = [self.span(features, first, min(self.span_slots, t - first)) for first in range(0, t, self.span_slots)]
        embeds, levels = zip(*spans) if spans else zip(self.span(features, 0, 0))
        levels = tuple(torch.cat(h, dim=1) for h in zip(*levels))  # per level (B, W, Qi, D)
        lengths = padded // self.cfg.levels[0].frames * self.cfg.levels[0].queries
        window_mask = tuple(
            torch.arange(t // lv.frames, device=padded.device)[None] < (padded // lv.frames)[:, None]
            for lv in self.cfg.levels
        )
        return ConnectorOutput(torch.cat(embeds, dim=1), lengths, levels, window_mask)

    def span(self, features: AVFeatures, first: int, count: int) -> tuple[Tensor, tuple[Tensor, ...]]:
        """The LLM tokens (B, count*3, E) and the level outputs of slots [first, first + count), whole windows of
        every level: the windows are independent, so `forward` runs a long clip span after span (bounded memory)."""
        x, slot_mask, _ = self.sync(features, first, count)  # (B, count, Q, Din), (B, count)
        levels = self.all_levels(self.norm(x), slot_mask)
        b = x.shape[0]
        tokens = torch.cat([h.reshape(b, -1, h.shape[-1]) for h in levels], dim=-1)  # (B, N, D*levels)
        return self.proj(tokens), levels

    def all_levels(self, x: Tensor, slot_mask: Tensor) -> tuple[Tensor, ...]:
        """Normalised x (B, T, Q, Din), slot_mask (B, T) -> per level (B, W, Qi, D), W = T / frames windows."""
        b, t, q, d = x.shape
        tokens = x.reshape(-1, d)  # (B*T*Q, Din)
        token_mask = slot_mask.repeat_interleave(q, dim=1)  # (B, T*Q)
        out: list[Tensor | None] = [None] * len(self.cfg.levels)
        for j, level_ids in enumerate(self.levels_of_qformer):
            windows = []
            for i in level_ids:
                k, n = self.cfg.levels[i].frames * q, b * t // self.cfg.levels[i].frames  # tokens per window, windows
                allowed = getattr(self, f"causal_allowed_{i}") if self.causal_masked[i] else None
                queries = self.queries[i].expand(n, -1, -1)  # (B*W, Qi, D)
                through = self.cross_through_weights[i]
                windows.append(
                    LevelWindows(queries, self.position.weight[:k], token_mask.reshape(n, k), allowed, through)
                )
            kmax = max(w.positions.shape[0] for w in windows)
            for i, h in zip(level_ids, self.qformers[j].forward_levels(tokens, windows, self._positions(j, kmax))):
                out[i] = h.view(b, t // self.cfg.levels[i].frames, self.cfg.levels[i].queries, -1)
        return tuple(out)

    def _positions(self, j: int, k: int) -> list[tuple[Tensor, ...]] | None:
        """Q-Former j's causal-block projections of position rows 0..k-1, per layer (None: no causal block).

        Recomputed when gradients may flow to them; otherwise kept until a weight they depend on is replaced or
        changed in place (its storage, dtype, device or version counter differ) or the module is converted."""
        qformer = self.qformers[j]
        if qformer.layers[0].causal is None:
            return None
        weights = [self.position.weight] + [
            t
            for layer in qformer.layers
            for lin in (layer.causal.q, layer.causal.k, layer.causal.v)
            for t in (lin.weight, lin.bias)
        ]
        if torch.is_grad_enabled() and any(w.requires_grad for w in weights):
            return qformer.project_positions(self.position.weight[:k])
        key = (
            k,
            torch.is_inference_mode_enabled(),
            tuple((w.data_ptr(), w._version, w.dtype, w.device) for w in weights),
        )
        kept = self._positions_memo.get(j)
        if kept is None or kept[0] != key:
            with torch.no_grad():
                kept = (key, qformer.project_positions(self.position.weight[:k]))
            self._positions_memo[j] = kept
        return kept[1]

    def _apply(self, fn, *args, **kwargs):
        self._positions_memo.clear()  # .to()/.half()/...: storages may be reused at the same address
        return super()._apply(fn, *args, **kwargs)

    def level(self, i: int, x: Tensor, slot_mask: Tensor) -> Tensor:
        """Q-Former outputs of level i alone, as the official code computes them: (B, W, Qi, D), W = T / frames.

        The reference `all_levels` must equal (to rounding); `forward` does not use it."""
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


def media_token_count(cfg: ConnectorConfig, frames: int, is_image: bool, audio_slots: int) -> int:
    """How many tokens the connector gives the LLM for one sample (known before running any encoder).

    `audio_slots`: the audio's 0.5-s slots (`timeline.audio_slots`; official: 60 per started 30-s chunk)."""
    _, _, padded = slot_counts(
        torch.tensor([frames]),
        torch.tensor([is_image]),
        torch.tensor([audio_slots]),
        cfg.image_slots,
        cfg.window_multiple,
    )
    return int(padded) // cfg.levels[0].frames * cfg.levels[0].queries
