"""The LLM tokenizer behind a small interface: encode a text piece, decode ids, special ids.

Every text piece of a prompt is tokenised on its own, without special tokens (spec §6.2): SentencePiece then
adds its dummy-prefix `▁` to each piece, exactly as the official prompt layout does.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from videosalmonn.errors import CheckpointError
from videosalmonn.parts import expand

TINY_TOKENIZER = "tiny"


class TextTokenizer:
    """Wraps a Hugging Face tokenizer; `pad_id` falls back to EOS (official: pad = eos = `</s>`).

    With a SentencePiece model (LLaMA/Vicuna) decoding follows the slow `LlamaTokenizer` the official code used:
    SentencePiece decodes the pieces between special tokens (the fast tokenizer groups byte-fallback pieces of
    invalid UTF-8 differently; valid text decodes the same either way).
    """

    def __init__(self, hf_tokenizer):
        self.hf = hf_tokenizer
        self.sp = _sentencepiece(hf_tokenizer)
        self.bos_id: int = hf_tokenizer.bos_token_id
        self.eos_id: int = hf_tokenizer.eos_token_id
        pad = hf_tokenizer.pad_token_id
        self.pad_id: int = pad if pad is not None else self.eos_id
        if self.bos_id is None or self.eos_id is None:
            raise CheckpointError("the LLM tokenizer has no BOS or EOS token")

    def encode(self, text: str) -> list[int]:
        return self.hf(text, add_special_tokens=False).input_ids

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        if self.sp is None:
            return self.hf.decode(ids, skip_special_tokens=skip_special_tokens)
        special = set(self.hf.all_special_ids)
        out, run = [], []
        for i in ids:
            if i in special:
                out.append(self.sp.decode(run))
                run = []
                if not skip_special_tokens:
                    out.append(self.hf.convert_ids_to_tokens(i))
            else:
                run.append(i)
        return "".join(out) + self.sp.decode(run)

    def __len__(self) -> int:
        return len(self.hf)


def load_tokenizer(source: str | Path | None) -> TextTokenizer:
    """From an HF dir, hub id or converted part (`parts:NAME`); `None`/"tiny": the packaged tiny SentencePiece one."""
    from transformers import AutoTokenizer

    if source is None or str(source) == TINY_TOKENIZER:
        from transformers import LlamaTokenizer

        path = resources.files("videosalmonn.presets") / "tiny" / "llm"
        return TextTokenizer(LlamaTokenizer.from_pretrained(str(path)))
    try:
        return TextTokenizer(AutoTokenizer.from_pretrained(str(expand(source))))
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{source}: cannot load the LLM tokenizer ({first})") from None


def _sentencepiece(hf_tokenizer):
    path = getattr(hf_tokenizer, "vocab_file", None)
    if not path or not str(path).endswith(".model") or not Path(path).is_file():
        return None
    import sentencepiece

    return sentencepiece.SentencePieceProcessor(model_file=str(path))
