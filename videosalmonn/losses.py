"""Training losses: pure functions of tensors (paper eq. 6-7, spec §5.1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from videosalmonn.prompting.conversation import IGNORE


def answer_positions(labels: Tensor) -> Tensor:
    """(B, L) labels -> (B, L) bool: the positions whose logits predict a labelled token (the next one)."""
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE
    return keep


def answer_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean next-token CE over labelled tokens: logits (B, L, V) predict labels (B, L) shifted by one.

    Logits (N, V) are those of the `answer_positions(labels)` only, in row-major order: the same loss.
    """
    if logits.dim() == 2:
        targets = labels[:, 1:][labels[:, 1:] != IGNORE]  # (N,) in the order of answer_positions
        return F.cross_entropy(logits.float(), targets)
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=IGNORE)


def diversity_loss(queries: Tensor) -> Tensor:
    """Mean pairwise cosine similarity between the output queries of each window (spec §5.1).

    queries (N, Q, D) -> scalar: sum over windows and ordered pairs i != j of cos(h_i, h_j), divided by
    N * Q * (Q - 1) (the official mean; the paper's eq. 6 writes the sum). Low = diverse queries.
    """
    n, q, _ = queries.shape
    dot = torch.einsum("nid,njd->nij", queries, queries)  # (N, Q, Q)
    norm = queries.pow(2).sum(-1).sqrt()  # (N, Q)
    cos = dot / (norm[:, :, None] * norm[:, None, :] + 1e-9)
    off_diagonal = 1 - torch.eye(q, device=queries.device, dtype=queries.dtype)
    return (cos * off_diagonal).sum() / (n * (q * q - q))


def media_ctc_loss(
    tokens: Tensor, lengths: Tensor, table: Tensor, targets: Tensor, blank: int, tau: float
) -> Tensor | None:
    """CTC of the media tokens against token ids, read through the LLM's input-embedding table (the mini recipe's
    alignment stage; not in the paper).

    tokens (B, N, E) with `lengths` (B,) valid rows; table (V, E) the embeddings the tokens should resemble;
    targets (B, S) token ids, IGNORE-padded, a row of IGNORE = no target (the sample is left out). Each token's
    distribution over the table is softmax(cos(token, row) / tau): the norm of a token is free, its direction is
    learned. `blank` is the table row that reads as "nothing here". Mean over the samples with targets of the CTC
    loss per target token; None when no sample has one.
    """
    counts = (targets != IGNORE).sum(dim=1)  # (B,)
    rows = counts > 0
    if not bool(rows.any()):
        return None
    unit = F.normalize(tokens[rows].float(), dim=-1)  # (B', N, E)
    log_probs = (unit @ F.normalize(table.float(), dim=-1).T / tau).log_softmax(-1)  # (B', N, V)
    kept = targets[rows]
    flat = kept[kept != IGNORE]  # (sum S,) concatenated, row-major
    return F.ctc_loss(
        log_probs.transpose(0, 1), flat, lengths[rows], counts[rows], blank=blank, reduction="mean", zero_infinity=True
    )


def greedy_ctc(tokens: Tensor, table: Tensor, blank: int = 0) -> list[int]:
    """The greedy CTC reading of one sample's media tokens: what `media_ctc_loss` trains them to spell.

    tokens (N, E) the sample's valid media tokens; table (C, E) -> the row indices read, in order: per token the
    row of highest cosine similarity (the argmax of softmax(cos / tau) for any tau), runs of one row collapsed to
    one, then the `blank` row dropped (so a blank between two equal rows keeps both).
    """
    best = (F.normalize(tokens.float(), dim=-1) @ F.normalize(table.float(), dim=-1).T).argmax(-1)  # (N,)
    first = torch.ones_like(best, dtype=torch.bool)
    first[1:] = best[1:] != best[:-1]  # (N,) the first token of each run
    runs = best[first]
    return runs[runs != blank].tolist()
