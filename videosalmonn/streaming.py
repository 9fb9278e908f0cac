"""Token streaming out of a batched generation: which new text belongs to which request (serving and the demo).

`Pipeline.answer_batch(..., streamer=RowStreamer(...))` calls `put` once with the (B, 0) prompt ids, then once per
step with the (B,) new ids. `RowStreamer` hands each row's ids to a `TextDeltas`, which turns them into text
pieces whose concatenation is exactly the final `Answer.text` (leading/trailing blanks held back, like the
Pipeline's `.strip()`; an incomplete UTF-8 character held back until it is complete).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from transformers.generation.streamers import BaseStreamer

from videosalmonn.llm.language_model import GenerationAborted

REPLACEMENT_CHAR = "\ufffd"  # what a tokenizer decodes half a UTF-8 character to


# One exception for a stopped generation, whichever hook stopped it: `Pipeline.answer_batch(should_stop=...)` (every
# decoding kind, beam search included) or a streamer's own `should_stop`.
StreamAborted = GenerationAborted


class TextDeltas:
    """The ids of one answer -> new text since the last call. `sent` survives a `restart` (a retried generation)."""

    def __init__(self, decode: Callable[[list[int]], str], eos_id: int):
        self.decode = decode
        self.eos_id = eos_id
        self.ids: list[int] = []
        self.sent = ""
        self.finished = False

    def restart(self) -> None:
        self.ids, self.finished = [], False

    def push(self, token_id: int) -> str:
        if self.finished:
            return ""
        if token_id == self.eos_id:
            self.finished = True
            return ""
        self.ids.append(token_id)
        text = self.decode(self.ids).strip()
        if text.endswith(REPLACEMENT_CHAR) or not text.startswith(self.sent):
            return ""
        delta, self.sent = text[len(self.sent) :], text
        return delta

    def rest(self, final_text: str) -> str:
        """What is still to send once the final answer is known."""
        delta = final_text[len(self.sent) :] if final_text.startswith(self.sent) else ""
        self.sent += delta
        return delta


class RowStreamer(BaseStreamer):
    """Routes every row's new token to `on_text(row, delta)`; `should_stop()` true aborts the generation."""

    def __init__(
        self,
        rows: Sequence[TextDeltas],
        on_text: Callable[[int, str], None],
        should_stop: Callable[[], bool] = lambda: False,
    ):
        self.rows = rows
        self.on_text = on_text
        self.should_stop = should_stop
        self.started = False

    def put(self, value) -> None:
        if not self.started:  # the first call carries the (empty) prompt ids
            self.started = True
            return
        if self.should_stop():
            raise StreamAborted
        for row, (deltas, token_id) in enumerate(zip(self.rows, value.reshape(-1).tolist())):
            delta = deltas.push(int(token_id))
            if delta:
                self.on_text(row, delta)

    def end(self) -> None:
        pass
