"""The Q-Former of the MRC connector: learned queries read one window of synchronised frames (spec §4.1, §4.3).

A BERT-style Q-Former without text: the query tokens go through a LayerNorm, then `depth` layers of

    frames ──► [causal block: frame tokens attend to frames allowed by the block mask] ──┐  (every layer starts
    queries ─► self-attention ─► cross-attention to the (causal-block) frames ◄─────────┘   again from the
                               ─► feed-forward ─► next layer                                  ORIGINAL frames)

The causal block (paper §3.2.1, Fig. 3) is a self-attention over the frame tokens (width = input width, 2304 in
the released model) with a block-triangular mask over frames; it is not given the padding mask (as official).
Attention is computed eagerly (scores / sqrt(d) + additive mask, softmax in the compute dtype) because a window
made only of padding must give uniform attention, as in the official code, not NaN.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn


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
