"""A conversation -> token ids, labels and the media placeholder mask; several prompts -> a padded PromptBatch.

    turns ─► style.render ─► pieces ─► encode (each piece alone; media piece = N placeholders) ─► EncodedPrompt

`encode_conversation` is the one way from turns to prompt ids: inference (Pipeline), training (every batch and the
up-front length check), the server's token count and the parity checks all call it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from videosalmonn.errors import InputError
from videosalmonn.llm.tokenizer import TextTokenizer
from videosalmonn.prompting.templates import Piece, PromptStyle
from videosalmonn.types import PromptBatch, Turn

IGNORE = -100  # label of tokens without loss


@dataclass
class EncodedPrompt:
    ids: list[int]
    labels: list[int]  # IGNORE except answer tokens
    media: list[bool]  # True at the media placeholder positions


def encode_conversation(
    turns: Sequence[Turn], style: PromptStyle, tokenizer: TextTokenizer, media_tokens: int, max_text_tokens: int
) -> EncodedPrompt:
    """Turns (user first; ending on a user turn for generation, on an answer for training) -> prompt ids in
    `style`, with `media_tokens` placeholders where the media go (0: text only, e.g. to count or check lengths).

    InputError for a malformed conversation or a prompt/answer piece longer than `max_text_tokens` (never cut)."""
    return encode(style.render(list(turns)), tokenizer, media_tokens, max_text_tokens)


def encode(pieces: list[Piece], tokenizer: TextTokenizer, media_tokens: int, max_text_tokens: int) -> EncodedPrompt:
    """Tokenise every text piece on its own; the media piece becomes `media_tokens` placeholders (pad ids)."""
    ids: list[int] = []
    labels: list[int] = []
    media: list[bool] = []
    for piece in pieces:
        if piece.media:
            new = [tokenizer.pad_id] * media_tokens
        elif piece.special is not None:
            new = [tokenizer.bos_id if piece.special == "bos" else tokenizer.eos_id]
        else:
            new = tokenizer.encode(piece.text)
            if len(new) > max_text_tokens:
                kind = "answer" if piece.target else "prompt"
                raise InputError(
                    f"the {kind} is {len(new)} tokens long; the limit is {max_text_tokens} (llm.max_text_tokens)"
                )
        ids += new
        labels += new if piece.target else [IGNORE] * len(new)
        media += [piece.media] * len(new)
    return EncodedPrompt(ids, labels, media)


def collate_prompts(prompts: list[EncodedPrompt], pad_id: int, side: str = "left") -> PromptBatch:
    """Pad to the longest prompt; `left` for generation (every prompt ends where generation starts)."""
    length = max(len(p.ids) for p in prompts)
    ids = torch.full((len(prompts), length), pad_id, dtype=torch.long)
    labels = torch.full((len(prompts), length), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(prompts), length), dtype=torch.long)
    media = torch.zeros((len(prompts), length), dtype=torch.bool)
    for i, p in enumerate(prompts):
        span = slice(length - len(p.ids), length) if side == "left" else slice(0, len(p.ids))
        ids[i, span] = torch.tensor(p.ids)
        labels[i, span] = torch.tensor(p.labels)
        mask[i, span] = 1
        media[i, span] = torch.tensor(p.media)
    has_labels = any(label != IGNORE for p in prompts for label in p.labels)
    return PromptBatch(ids, mask, media, labels if has_labels else None)
