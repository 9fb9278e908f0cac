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

from videosalmonn.config import ModelConfig
from videosalmonn.errors import CheckpointError
from videosalmonn.weights import PICKLE_SUFFIXES, resolve

TINY_VOCAB = "tiny"
BERT_UNCASED = "bert-base-uncased"  # the official instruction tokenizer (30522 + [DEC] = the Q-Former's 30523 rows)
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
    source: str | Path | None = TINY_VOCAB, max_length: int = MAX_LENGTH, vocab_size: int | None = None
) -> InstructionTokenizer:
    """From a dir with vocab.txt, an InstructBLIP dir (its `qformer_tokenizer/`), a hub id of either, or
    `None`/"tiny" (the packaged tiny vocabulary).

    `vocab_size`: the Q-Former's word-embedding rows (`encoders.image_qformer.vocab_size`); the tokenizer, with
    [DEC], must have exactly as many, or every id past the smaller one would be wrong.
    Always `from_pretrained` on a directory holding the files: in transformers 5 `BertTokenizer(vocab_file=...)`
    ignores the file, and `from_pretrained` of a folder without them gives a 5-token tokenizer.
    """
    from transformers import BertTokenizer

    root = _tokenizer_dir(source)
    try:
        hf = BertTokenizer.from_pretrained(str(root), truncation_side="left")
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{root}: cannot load the BERT instruction tokenizer ({_first_line(e)})") from None
    vocab = hf.get_vocab()
    if "[CLS]" not in vocab or "[SEP]" not in vocab:
        raise CheckpointError(f"{root}: not a BERT WordPiece vocabulary (no [CLS]/[SEP] token)")
    hf.add_special_tokens({"bos_token": BOS_TOKEN})  # no-op when the saved tokenizer has it already
    tok = InstructionTokenizer(hf, max_length)
    if vocab_size is not None and len(tok) != vocab_size:
        raise CheckpointError(
            f"{root}: the instruction tokenizer has {len(tok)} tokens with {BOS_TOKEN}, "
            f"the Q-Former (encoders.image_qformer.vocab_size) {vocab_size}"
        )
    return tok


def instruction_tokenizer_for(cfg: ModelConfig) -> InstructionTokenizer:
    """The instruction tokenizer of a model, its size checked against the Q-Former's word embeddings.

    `weights.qformer_tokenizer` if set; else the `qformer_tokenizer/` of the HF InstructBLIP model
    (`weights.instructblip`), falling back to `bert-base-uncased` (the official one) when it has none or is a
    LAVIS file; the packaged tiny vocabulary when no InstructBLIP weights are given.
    """
    w, size = cfg.weights, cfg.encoders.image_qformer.vocab_size
    if w.qformer_tokenizer:
        return load_instruction_tokenizer(w.qformer_tokenizer, vocab_size=size)
    if not w.instructblip:
        return load_instruction_tokenizer(TINY_VOCAB, vocab_size=size)
    errors = []
    if Path(str(w.instructblip)).suffix not in PICKLE_SUFFIXES:  # an HF InstructBLIP id/dir
        try:
            root = resolve(w.instructblip) / INSTRUCTBLIP_SUBFOLDER
            if not root.is_dir():
                raise CheckpointError(f"{w.instructblip}: no {INSTRUCTBLIP_SUBFOLDER}/ folder")
            return load_instruction_tokenizer(root, vocab_size=size)
        except CheckpointError as e:
            errors.append(str(e))
    try:
        return load_instruction_tokenizer(BERT_UNCASED, vocab_size=size)
    except CheckpointError as e:
        errors.append(str(e))
    tried = "; ".join(errors)
    raise CheckpointError(f"no instruction tokenizer fits the Q-Former (set weights.qformer_tokenizer): {tried}")


def _tokenizer_dir(source: str | Path | None) -> Path:
    """The local directory holding the BERT tokenizer files of `source` (a hub id is resolved to its snapshot)."""
    if source is None or str(source) == TINY_VOCAB:
        return Path(str(resources.files("videosalmonn.presets") / "tiny" / "bert"))
    path = Path(str(source)).expanduser()
    if not path.exists():
        path = resolve(source)  # a hub id: its snapshot (vocab files included); else a one-line error
    if not path.is_dir():
        raise CheckpointError(f"{source}: expected a tokenizer directory, hub id, or 'tiny'")
    root = path / INSTRUCTBLIP_SUBFOLDER if (path / INSTRUCTBLIP_SUBFOLDER).is_dir() else path
    if not any((root / f).is_file() for f in TOKENIZER_FILES):
        raise CheckpointError(f"{root}: no BERT tokenizer here (looked for {', '.join(TOKENIZER_FILES)})")
    return root


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def repeat_per_frame(ids: Tensor, mask: Tensor, frames_per_sample: int) -> tuple[Tensor, Tensor]:
    """(B, L) -> (B * F, L): every frame of a sample gets its sample's instruction (official `repeat`)."""
    return (
        ids.repeat_interleave(frames_per_sample, dim=0),  # (B*F, L)
        mask.repeat_interleave(frames_per_sample, dim=0),
    )
