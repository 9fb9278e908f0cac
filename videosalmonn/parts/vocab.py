"""The uncased BERT WordPiece vocabulary -> a BertTokenizer directory (the instruction tokenizer).

The official instruction tokenizer is `bert-base-uncased` (`prompting/instruction.py`); all-MiniLM-L6-v2 ships the
same 30,522-entry uncased vocabulary. Only `vocab.txt` is read: the tokenizer settings are written here (lower
case, the BERT special tokens, left truncation is set by the loader).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from videosalmonn.errors import CheckpointError

VOCAB_SIZE = 30522
TOKENIZER_CONFIG = {
    "tokenizer_class": "BertTokenizer",
    "do_lower_case": True,
    "tokenize_chinese_chars": True,
    "strip_accents": None,
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
    "model_max_length": 512,
}


def convert(files: dict[str, Path], out: Path) -> None:
    """`model/vocab.txt` -> `out/vocab.txt` + `out/tokenizer_config.json`."""
    vocab = files["model/vocab.txt"]
    entries = vocab.read_text(encoding="utf-8").splitlines()
    if len(entries) != VOCAB_SIZE or entries[101:103] != ["[CLS]", "[SEP]"]:
        raise CheckpointError(f"{vocab}: not the uncased BERT vocabulary ({len(entries)} entries)")
    shutil.copyfile(vocab, out / "vocab.txt")
    (out / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG, indent=1))
