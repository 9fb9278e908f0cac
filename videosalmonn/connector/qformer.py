"""The Q-Former of the MRC connector: learned queries read one window of synchronised frames (spec §4.1, §4.3).

A BERT-style Q-Former without text: the query tokens go through a LayerNorm, then `depth` layers of

    frames ──► [causal block: frame tokens attend to frames allowed by the block mask] ──┐  (every layer starts
    queries ─► self-attention ─► cross-attention to the (causal-block) frames ◄─────────┘   again from the
                               ─► feed-forward ─► next layer                                  ORIGINAL frames)

The causal block (paper §3.2.1, Fig. 3) is a self-attention over the frame tokens (width = input width, 2304 in
the released model) with a block-triangular mask over frames; it is not given the padding mask (as official).
Query attention is computed eagerly (scores / sqrt(d) + additive mask, softmax in the compute dtype) because a
window made only of padding must give uniform attention, as in the official code, not NaN.

`forward` runs one set of windows exactly as the official code writes it. `forward_levels` runs the windows of
several resolution levels over the same normalised tokens at once, with less work and the same numbers (to
rounding): the causal block's q/k/v projections are linear, W (LN x + p) + b = W LN x + (W p + b), so W LN x is
computed once per layer for all levels and each level adds its projected position rows; the causal block (never
a fully masked row: a frame always sees itself) uses the fused attention kernel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from videosalmonn.kernels import attention_kernels


class Attention(nn.Module):
    """Multi-head attention + dropout + residual + post-LayerNorm (a BERT `BertAttention`)."""

    def __init__(self, width: int, context_width: int, num_heads: int, eps: float, dropout: float):
        super().__init__()
        if width % num_heads:
            raise ValueError(f"attention width {width} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.q = nn.Linear(width, width)
        self.k = nn.Linear(context_width, width)
        self.v = nn.Linear(context_width, width)
        self.out = nn.Linear(width, width)
        self.norm = nn.LayerNorm(width, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, context: Tensor, mask: Tensor | None = None) -> Tensor:
        """x (N, Lq, D), context (N, Lk, Dc), mask additive, broadcastable to (N, H, Lq, Lk) -> (N, Lq, D)."""
        n, lq, d = x.shape
        q = self._heads(self.q(x))  # (N, H, Lq, Dh)
        k = self._heads(self.k(context))  # (N, H, Lk, Dh)
        v = self._heads(self.v(context))
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (N, H, Lq, Lk)
        if mask is not None:
            scores = scores + mask
        probs = self.dropout(scores.softmax(dim=-1))
        ctx = (probs @ v).transpose(1, 2).reshape(n, lq, d)  # (N, Lq, D)
        return self.norm(self.dropout(self.out(ctx)) + x)

    def attend_projected(self, x: Tensor, q: Tensor, k: Tensor, v: Tensor, allowed: Tensor | None) -> Tensor:
        """Self-attention of x (N, L, D) from its projections q, k, v (N, L, D), biases included -> (N, L, D).

        `allowed` (L, L) bool, True = may attend, every row with at least one True (or None: all). Fused kernel;
        equals `forward(x, x, additive_mask(allowed))` to rounding."""
        n, length, d = x.shape
        p = self.dropout.p if self.training else 0.0
        with attention_kernels(q.device, q.dtype):  # bfloat16 on an AVX2 CPU: the math kernel
            ctx = F.scaled_dot_product_attention(
                self._heads(q), self._heads(k), self._heads(v), attn_mask=allowed, dropout_p=p
            )  # (N, H, L, Dh)
        ctx = ctx.transpose(1, 2).reshape(n, length, d)
        return self.norm(self.dropout(self.out(ctx)) + x)

    def attend_through_weights(self, x: Tensor, context: Tensor, mask: Tensor) -> Tensor:
        """`forward(x, context, mask)` without projecting the context (equal to rounding): cheaper when there are
        few queries per window (`through_weights_is_cheaper`).

        The keys enter through the queries, q . (Wk c + bk) = (Wk^T q) . c + q . bk, and the values after the
        attention, p (Wv c + bv) = (p c) Wv^T + (sum p) bv, per head: (N, H*Lq, Dc) products with the context."""
        n, lq, d = x.shape
        h, dh = self.num_heads, d // self.num_heads
        q = self._heads(self.q(x))  # (N, H, Lq, Dh)
        wk, wv = self.k.weight.view(h, dh, -1), self.v.weight.view(h, dh, -1)  # (H, Dh, Dc)
        qk = torch.einsum("nhqd,hde->nhqe", q, wk).reshape(n, h * lq, -1)  # (N, H*Lq, Dc)
        q_bias = (q * self.k.bias.view(h, 1, dh)).sum(-1).reshape(n, h * lq, 1)  # (N, H*Lq, 1)
        scores = (qk @ context.transpose(1, 2) + q_bias) / math.sqrt(dh)  # (N, H*Lq, Lk)
        scores = scores.view(n, h, lq, -1) + mask  # (N, H, Lq, Lk)
        probs = self.dropout(scores.softmax(dim=-1))
        read = (probs.view(n, h * lq, -1) @ context).view(n, h, lq, -1)  # (N, H, Lq, Dc)
        ctx = torch.einsum("nhqe,hde->nhqd", read, wv) + probs.sum(-1, keepdim=True) * self.v.bias.view(h, 1, dh)
        ctx = ctx.transpose(1, 2).reshape(n, lq, d)  # (N, Lq, D)
        return self.norm(self.dropout(self.out(ctx)) + x)

    def _heads(self, t: Tensor) -> Tensor:
        n, length, d = t.shape
        return t.view(n, length, self.num_heads, d // self.num_heads).transpose(1, 2)


class FeedForward(nn.Module):
    """Linear-GELU-Linear + dropout + residual + post-LayerNorm (the Q-Former's `*_query` FFN)."""

    def __init__(self, width: int, hidden: int, eps: float, dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)
        self.norm = nn.LayerNorm(width, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.dropout(self.fc2(F.gelu(self.fc1(x)))) + x)


class QFormerLayer(nn.Module):
    def __init__(
        self, width: int, input_width: int, num_heads: int, mlp_width: int, eps: float, dropout: float, causal: bool
    ):
        super().__init__()
        self.causal = Attention(input_width, input_width, num_heads, eps, dropout) if causal else None
        self.self_attn = Attention(width, width, num_heads, eps, dropout)
        self.cross_attn = Attention(width, input_width, num_heads, eps, dropout)
        self.ffn = FeedForward(width, mlp_width, eps, dropout)

    def forward(self, queries: Tensor, frames: Tensor, frames_mask: Tensor, causal_mask: Tensor | None) -> Tensor:
        """queries (N, Q, D), frames (N, K, Din), masks additive -> (N, Q, D)."""
        context = frames if self.causal is None else self.causal(frames, frames, causal_mask)
        queries = self.self_attn(queries, queries)
        queries = self.cross_attn(queries, context, frames_mask)
        return self.ffn(queries)

    def read(self, queries: Tensor, context: Tensor, frames_mask: Tensor, through_weights: bool) -> Tensor:
        """The query side: self-attention, cross-attention to context (N, K, Din), feed-forward -> (N, Q, D);
        `through_weights`: `Attention.attend_through_weights` (same numbers, fewer operations for few queries)."""
        queries = self.self_attn(queries, queries)
        cross = self.cross_attn.attend_through_weights if through_weights else self.cross_attn
        queries = cross(queries, context, frames_mask)
        return self.ffn(queries)


@dataclass(frozen=True)
class LevelWindows:
    """One resolution level for `CausalQFormer.forward_levels`: its queries and how it cuts the shared tokens."""

    queries: Tensor  # (N, Qi, D) query tokens, one row per window
    positions: Tensor  # (K, Din) position rows added to every window's tokens
    frames_mask: Tensor  # (N, K) 1 = attend, 0 = padding
    allowed: Tensor | None  # (K, K) bool causal-block mask, True = may attend; None: every pair
    through_weights: bool = False  # cross-attention by `Attention.attend_through_weights`


class CausalQFormer(nn.Module):
    """Queries (N, Q, D) x window of frame tokens (N, K, Din) -> (N, Q, D)."""

    def __init__(
        self,
        width: int,
        input_width: int,
        depth: int,
        num_heads: int,
        mlp_width: int,
        eps: float,
        causal: bool,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.query_norm = nn.LayerNorm(width, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            QFormerLayer(width, input_width, num_heads, mlp_width, eps, dropout, causal) for _ in range(depth)
        )

    def forward(self, queries: Tensor, frames: Tensor, frames_mask: Tensor, causal_mask: Tensor | None) -> Tensor:
        """frames_mask (N, K) 1 = attend, 0 = padding; causal_mask additive (K, K) or None."""
        pad = additive_mask(frames_mask, frames.dtype)[:, None, None, :]  # (N, 1, 1, K)
        causal = None if causal_mask is None else causal_mask[None, None]  # (1, 1, K, K)
        q = self.dropout(self.query_norm(queries))
        for layer in self.layers:
            q = layer(q, frames, pad, causal)
        return q

    def forward_levels(
        self, tokens: Tensor, levels: Sequence[LevelWindows], projected_positions: Sequence[tuple[Tensor, ...]] | None
    ) -> list[Tensor]:
        """tokens (M, Din): the normalised frame tokens every level reads, M = N_i * K_i for each level i ->
        per level (N_i, Q_i, D). Level i's windows are tokens.view(N_i, K_i, Din) + positions_i, as `forward`
        would take them. projected_positions: per layer (Wq p + bq, Wk p + bk, Wv p + bv) of the causal block,
        each (Kmax, Din) with K_i <= Kmax (`project_positions`); None without a causal block."""
        din = tokens.shape[-1]
        frames = [tokens.view(-1, lv.positions.shape[0], din) + lv.positions for lv in levels]  # (N_i, K_i, Din)
        pads = [additive_mask(lv.frames_mask, tokens.dtype)[:, None, None, :] for lv in levels]  # (N_i, 1, 1, K_i)
        qs = [self.dropout(self.query_norm(lv.queries)) for lv in levels]
        for layer, positions in zip(self.layers, projected_positions or [None] * len(self.layers)):
            contexts = (
                frames if layer.causal is None else _causal_contexts(layer.causal, tokens, frames, positions, levels)
            )
            qs = [layer.read(q, c, pad, lv.through_weights) for q, c, pad, lv in zip(qs, contexts, pads, levels)]
        return qs

    def project_positions(self, positions: Tensor) -> list[tuple[Tensor, Tensor, Tensor]]:
        """positions (K, Din) -> per layer the causal block's (q, k, v) projections of them, biases included."""
        return [
            tuple(lin(positions) for lin in (layer.causal.q, layer.causal.k, layer.causal.v)) for layer in self.layers
        ]


def _causal_contexts(
    block: Attention,
    tokens: Tensor,
    frames: list[Tensor],
    positions: tuple[Tensor, ...],
    levels: Sequence[LevelWindows],
) -> list[Tensor]:
    """The causal block of one layer for every level, its q/k/v projections of the tokens computed once."""
    shared = [F.linear(tokens, lin.weight) for lin in (block.q, block.k, block.v)]  # W LN x: (M, Din) x 3
    contexts = []
    for n, (f, lv) in enumerate(zip(frames, levels)):
        last = n == len(levels) - 1  # the last level may add its positions in place
        q, key, value = (
            s.view_as(f).add_(p[: f.shape[1]]) if last else s.view_as(f) + p[: f.shape[1]]
            for s, p in zip(shared, positions)
        )  # (N_i, K_i, Din) each: W LN x + (W p + b)
        contexts.append(block.attend_projected(f, q, key, value, lv.allowed))
    return contexts


def through_weights_is_cheaper(queries: int, tokens: int, width: int, context_width: int, num_heads: int) -> bool:
    """Multiply-adds of one window's cross-attention, `attend_through_weights` vs projecting the context."""
    projecting = 2 * tokens * context_width * width + 2 * queries * tokens * width
    through = 2 * queries * width * context_width + 2 * num_heads * queries * tokens * context_width
    return through < projecting


def additive_mask(keep: Tensor, dtype: torch.dtype) -> Tensor:
    """0/1 mask -> additive mask: 0 where kept, the dtype's lowest value where masked (as HF/LAVIS do)."""
    return (1.0 - keep.to(dtype)) * torch.finfo(dtype).min


def block_causal_allowed(frames: int, tokens_per_frame: int, direction: Literal["future", "past"]) -> Tensor:
    """(K, K) bool, True = may attend, K = frames * tokens_per_frame, over the tokens of one window.

    `future`: frame i sees frames j >= i (the official `kron(triu(ones), ones(32, 32))`, what the released
    checkpoint was trained with); `past`: frame i sees frames j <= i (the paper's description).
    """
    ones = torch.ones(frames, frames)
    frame_mask = torch.triu(ones) if direction == "future" else torch.tril(ones)
    return torch.kron(frame_mask, torch.ones(tokens_per_frame, tokens_per_frame)).bool()  # (K, K)


def block_causal_mask(
    frames: int, tokens_per_frame: int, direction: Literal["future", "past"], dtype: torch.dtype
) -> Tensor:
    """`block_causal_allowed` as an additive (K, K) mask in `dtype`."""
    return additive_mask(block_causal_allowed(frames, tokens_per_frame, direction), dtype)
