"""OCR reader: TextVQA, 1,000 questions drawn with a fixed seed.

SAVEBench `textvqa.json`: 5,000 objects {"dataset": "textvqa", "image": "<id>.jpg", "question", "answer":
[10 human answers]} (the TextVQA 0.5.1 *val* questions: test answers are not public, although Table 1 says
"test"). Table 1 evaluates 1,000 randomly drawn samples; the paper's draw is unpublished, ours is
`seeded_subset(5000, 1000, seed=SUBSET_SEED)` (sample ids keep the manifest index). The prompt is the
question verbatim (App. A: "What is the brand of this camera?"). Images resolve against `media_root`
(TextVQA's train_val_images/train_images/).
"""

from __future__ import annotations

from pathlib import Path

from videosalmonn.data.save.common import (
    SUBSET_SEED,
    BenchmarkSample,
    load_json_list,
    read_question_answer,
    seeded_subset,
)

NAME = "ocr"
MANIFEST = "textvqa.json"
SUBSET_SIZE = 1000


def read(
    manifest_path: str | Path,
    media_root: str | Path | None = None,
    subset: int | None = SUBSET_SIZE,
    seed: int = SUBSET_SEED,
) -> list[BenchmarkSample]:
    n = len(load_json_list(manifest_path))
    return read_question_answer(manifest_path, media_root, NAME, indices=seeded_subset(n, subset, seed))
