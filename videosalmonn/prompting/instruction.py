"""The instruction given to the InstructBLIP Q-Former with every frame (spec §2, "InstructBLIP instruction").

Exactly as official (`videosalmonn:model/openllama.py`):

    tok = BertTokenizer.from_pretrained("bert-base-uncased", truncation_side="left")
    tok.add_special_tokens({"bos_token": "[DEC]"})        # len(vocab) + 1 rows in the Q-Former's word embeddings
    tok(instructions, padding="longest", truncation=True, max_length=512)   # [CLS] ... [SEP], right-padded

The text is the first human turn of the conversation. The caller repeats the (B, L) result over the frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from torch import Tensor

from videosalmonn.errors import CheckpointError

TINY_VOCAB = "tiny"
MAX_LENGTH = 512  # official max_length (= bert-base-uncased max_position_embeddings)
BOS_TOKEN = "[DEC]"  # added by LAVIS/BLIP-2 as the decoder BOS; shifts the vocabulary by one row
INSTRUCTBLIP_SUBFOLDER = "qformer_tokenizer"  # where HF InstructBLIP repos keep this tokenizer
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json")


class InstructionTokenizer:
    """BERT WordPiece tokenizer for the Q-Former instruction.

    Example:
        >>> tok = load_instruction_tokenizer("tiny")
        >>> ids, mask = tok(["Describe the video"])      # (1, L) long each, [CLS] ... [SEP]
    """

    def __init__(self, hf_tokenizer, max_length: int = MAX_LENGTH):
        self.hf = hf_tokenizer
        self.max_length = max_length
        if hf_tokenizer.truncation_side != "left":
            raise ValueError("the instruction tokenizer must truncate on the left (official truncation_side)")

    def __call__(self, instructions: Sequence[str]) -> tuple[Tensor, Tensor]:
        """B instructions -> ids (B, L) and mask (B, L), LongTensors, padded to the longest."""
        if isinstance(instructions, str) or len(instructions) == 0:
            raise ValueError("give a non-empty list of instruction strings")
        enc = self.hf(
            list(instructions), padding="longest", truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return enc["input_ids"].long(), enc["attention_mask"].long()

    def __len__(self) -> int:
        """Vocabulary size including [DEC]: must equal `ImageQFormerConfig.vocab_size`."""
        return len(self.hf)


def load_instruction_tokenizer(
    source: str | Path | None = TINY_VOCAB, max_length: int = MAX_LENGTH
) -> InstructionTokenizer:
    """From a dir with vocab.txt, an InstructBLIP dir (its `qformer_tokenizer/`), a hub id, or `None`/"tiny"
    (the packaged tiny vocabulary).

    Always `from_pretrained` on a directory: in transformers 5 `BertTokenizer(vocab_file=...)` ignores the file.
    """
    from transformers import BertTokenizer

    if source is None or str(source) == TINY_VOCAB:
        source = Path(str(resources.files("videosalmonn.presets") / "tiny" / "bert"))
    path = Path(str(source)).expanduser()
    if path.is_dir():
        root = path / INSTRUCTBLIP_SUBFOLDER if (path / INSTRUCTBLIP_SUBFOLDER).is_dir() else path
        if not any((root / f).is_file() for f in TOKENIZER_FILES):
            raise CheckpointError(f"{root}: no BERT tokenizer here (looked for {', '.join(TOKENIZER_FILES)})")
        attempts = [(str(root), {})]
    elif path.exists() or str(source).startswith((".", "/", "~")):
        raise CheckpointError(f"{source}: expected a tokenizer directory, hub id, or 'tiny'")
    else:  # hub id: a BERT repo, or an InstructBLIP repo with the tokenizer in a subfolder
        # (subfolder first: an InstructBLIP repo's root holds the LLaMA tokenizer)
        attempts = [(str(source), {"subfolder": INSTRUCTBLIP_SUBFOLDER}), (str(source), {})]
    errors = []
    for name, kwargs in attempts:
        try:
            hf = BertTokenizer.from_pretrained(name, truncation_side="left", **kwargs)
        except (OSError, ValueError) as e:
            errors.append(_first_line(e))
            continue
        vocab = hf.get_vocab()
        if "[CLS]" not in vocab or "[SEP]" not in vocab:
            raise CheckpointError(f"{name}: not a BERT WordPiece vocabulary (no [CLS]/[SEP] token)")
        hf.add_special_tokens({"bos_token": BOS_TOKEN})  # no-op when the saved tokenizer has it already
        return InstructionTokenizer(hf, max_length)
    raise CheckpointError(f"{source}: cannot load the BERT instruction tokenizer ({'; '.join(errors)})")


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def repeat_per_frame(ids: Tensor, mask: Tensor, frames_per_sample: int) -> tuple[Tensor, Tensor]:
    """(B, L) -> (B * F, L): every frame of a sample gets its sample's instruction (official `repeat`)."""
    return (
        ids.repeat_interleave(frames_per_sample, dim=0),  # (B*F, L)
        mask.repeat_interleave(frames_per_sample, dim=0),
    )
