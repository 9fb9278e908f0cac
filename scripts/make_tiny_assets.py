"""Build the tiny preset's tokenizers (committed under videosalmonn/presets/tiny/): run once, deterministic.

* `llm/tokenizer.model`: a SentencePiece BPE model (LLaMA settings: byte fallback, unk 0, bos 1, eos 2) trained on the
  small corpus below, so tests and the quickstart need no downloads.
* `bert/vocab.txt`: a BERT WordPiece vocabulary (lower-case words of the corpus + letters + ## pieces) for the
  InstructBLIP instruction tokenizer.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import sentencepiece as spm

OUT = Path(__file__).resolve().parents[1] / "videosalmonn" / "presets" / "tiny"

SUBJECTS = [
    "a man",
    "a woman",
    "a child",
    "a dog",
    "a band",
    "the speaker",
    "two people",
    "a crowd",
    "a singer",
    "the presenter",
    "a cat",
    "a musician",
    "the audience",
    "a teacher",
    "a player",
    "a bird",
]
ACTIONS = [
    "is singing into a microphone",
    "plays the piano",
    "talks about the weather",
    "walks on the grass",
    "is cooking in a kitchen",
    "reads a story aloud",
    "claps and cheers",
    "explains a slide",
    "is playing the guitar",
    "runs across the field",
    "drives a car",
    "opens the door",
    "laughs loudly",
    "describes the picture",
    "answers a question",
    "is dancing on the stage",
]
PLACES = [
    "on the stage",
    "in the park",
    "at home",
    "in a classroom",
    "on the street",
    "near the river",
    "in a concert hall",
    "at night",
    "in the morning",
    "under the rain",
]
QUESTIONS = [
    "Describe the video together with the audio in detail.",
    "What is happening in the video?",
    "Describe the image and what the speaker says.",
    "Transcribe the speech into text.",
    "What is the source of the sound?",
    "Is the audio compatible with the video?",
    "Please describe the audio.",
    "Write a short description about this image.",
    "Choose one from the options: A, B, C, D or E.",
    "Yes.",
    "No.",
    "USER: <Img></Img> ASSISTANT:",
]


def corpus() -> str:
    lines = list(QUESTIONS)
    for i, s in enumerate(SUBJECTS):
        for j, a in enumerate(ACTIONS):
            p = PLACES[(i + j) % len(PLACES)]
            lines.append(f"{s.capitalize()} {a} {p}, while the music plays {i + j} times.")
    return "\n".join(lines) + "\n"


def main():
    (OUT / "llm").mkdir(parents=True, exist_ok=True)
    (OUT / "bert").mkdir(parents=True, exist_ok=True)
    text = corpus()
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(text.splitlines()),
        model_writer=model,
        vocab_size=400,
        model_type="bpe",
        byte_fallback=True,
        split_digits=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        character_coverage=1.0,
        num_threads=1,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        minloglevel=2,
    )
    (OUT / "llm" / "tokenizer.model").write_bytes(model.getvalue())
    words = sorted(set(re.findall(r"[a-z]+|[0-9]|[^\sa-z0-9]", text.lower())))
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words + [f"##{c}" for c in letters + list("0123456789")]
    vocab = list(dict.fromkeys(vocab + letters))
    (OUT / "bert" / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (OUT / "bert" / "tokenizer_config.json").write_text('{"do_lower_case": true, "tokenizer_class": "BertTokenizer"}\n')
    print(f"wrote {OUT}/llm/tokenizer.model and {OUT}/bert/vocab.txt ({len(vocab)} words)")


if __name__ == "__main__":
    main()
