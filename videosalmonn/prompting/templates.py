"""Prompt layouts: a conversation -> a list of pieces (text, special token, or the media placeholder).

Each text piece is tokenised on its own (spec §6.2), so a layout is written as pieces, not as one string.

official (spec §6.2), one turn, then later turns:
    <s> "USER: <Img>" [media] "</Img> {q1}\\nASSISTANT:" "{a1}" </s> "USER: {q2}\\nASSISTANT:" "{a2}" </s> ...
llama2 (Llama-2 chat):
    <s> "[INST] <Img>" [media] "</Img> {q1} [/INST]" "{a1}" </s> <s> "[INST] {q2} [/INST]" "{a2}" </s> ...
chatml (SmolLM2's chat template, its default system prompt; eos = <|im_end|>):
    "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n<Img>" [media] "</Img> {q1}<|im_end|>\n
    <|im_start|>assistant\n" "{a1}" <|im_end|> "\n<|im_start|>user\n{q2}<|im_end|>\n<|im_start|>assistant\n" ...

A conversation may open with a system turn (the server's system/developer messages). Where the layout has a system
slot it goes there: llama2 `[INST] <<SYS>>\n{system}\n<</SYS>>\n\n<Img>...`, chatml in place of the default system
prompt. The official layout has none (the released model was trained without one): the system text is put before
the first question, `</Img> {system}\n{q1}\nASSISTANT:`; the media stay where the model saw them.

Answers (and their </s>) are the only pieces with a loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from videosalmonn.errors import InputError
from videosalmonn.types import Turn


@dataclass(frozen=True)
class Piece:
    text: str | None = None  # tokenised alone, no special tokens
    special: Literal["bos", "eos"] | None = None
    media: bool = False  # the media tokens go here
    target: bool = False  # loss on this piece


class PromptStyle:
    """Base: subclasses give the pieces of the first user turn, a later user turn, and an answer."""

    def first_user(self, text: str, system: str | None = None) -> list[Piece]:
        raise NotImplementedError

    def later_user(self, text: str) -> list[Piece]:
        raise NotImplementedError

    def answer(self, text: str) -> list[Piece]:
        return [Piece(text=text, target=True), Piece(special="eos", target=True)]

    def render(self, turns: list[Turn]) -> list[Piece]:
        """Alternating user/assistant turns starting with the user, after an optional system turn. Ending on a user
        turn = generation prompt."""
        system = turns[0].text if turns and turns[0].role == "system" else None
        turns = turns[1:] if system is not None else turns
        if not turns or turns[0].role != "user":
            raise InputError("a conversation must start with a user turn (after an optional system turn)")
        pieces: list[Piece] = []
        for i, turn in enumerate(turns):
            expected = "user" if i % 2 == 0 else "assistant"
            if turn.role != expected:
                raise InputError(f"turn {i + 1} should be a {expected} turn, got {turn.role}")
            if turn.role == "assistant":
                pieces += self.answer(turn.text)
            else:
                pieces += self.first_user(turn.text, system) if i == 0 else self.later_user(turn.text)
        return pieces


class OfficialStyle(PromptStyle):
    """The layout of the released checkpoint: no system prompt, media between <Img> and </Img>. A system text is put
    before the first question (there is no slot for it)."""

    def first_user(self, text: str, system: str | None = None) -> list[Piece]:
        question = text if system is None else system + "\n" + text
        return [
            Piece(special="bos"),
            Piece(text="USER: <Img>"),
            Piece(media=True),
            Piece(text="</Img> " + question + "\nASSISTANT:"),
        ]

    def later_user(self, text: str) -> list[Piece]:
        return [Piece(text="USER: " + text + "\nASSISTANT:")]


class Llama2Style(PromptStyle):
    """Llama-2 chat layout (paper App. H backbone), media at the start of the first instruction, after the
    `<<SYS>>` block when there is a system text."""

    def first_user(self, text: str, system: str | None = None) -> list[Piece]:
        sys_block = "" if system is None else f"<<SYS>>\n{system}\n<</SYS>>\n\n"
        return [
            Piece(special="bos"),
            Piece(text="[INST] " + sys_block + "<Img>"),
            Piece(media=True),
            Piece(text="</Img> " + text + " [/INST]"),
        ]

    def later_user(self, text: str) -> list[Piece]:
        return [Piece(special="bos"), Piece(text="[INST] " + text + " [/INST]")]


class ChatMLStyle(PromptStyle):
    """ChatML as SmolLM2-Instruct's chat template writes it (with its default system prompt), media at the start of
    the first user message; a system text replaces the default system prompt. The `<|im_start|>`/`<|im_end|>` markers
    in the text are the tokenizer's special tokens."""

    SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

    def first_user(self, text: str, system: str | None = None) -> list[Piece]:
        system = self.SYSTEM if system is None else system
        return [
            Piece(text=f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n<Img>"),
            Piece(media=True),
            Piece(text="</Img> " + text + "<|im_end|>\n<|im_start|>assistant\n"),
        ]

    def later_user(self, text: str) -> list[Piece]:
        return [Piece(text="\n<|im_start|>user\n" + text + "<|im_end|>\n<|im_start|>assistant\n")]


STYLES: dict[str, type[PromptStyle]] = {"official": OfficialStyle, "llama2": Llama2Style, "chatml": ChatMLStyle}


def prompt_style(name: str) -> PromptStyle:
    return STYLES[name]()
