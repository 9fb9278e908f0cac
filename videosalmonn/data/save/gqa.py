"""VQA reader: GQA test-dev balanced, 1,000 questions drawn with a fixed seed.

SAVEBench `testdev_balanced_questions_with_images.json`: 12,577 objects {"image": "<id>.jpg", "question",
"answer": short answer, "fullanswer": sentence}. (image, question) is not unique (12,569 distinct pairs),
so sample ids are the manifest index. Table 1 uses 1,000 random samples; ours are
`seeded_subset(12577, 1000, seed=SUBSET_SEED)`. The prompt is the question verbatim; the short "answer" is
the reference. Images resolve against `media_root` (GQA's images/).
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

NAME = "vqa"
MANIFEST = "testdev_balanced_questions_with_images.json"
SUBSET_SIZE = 1000


def read(
    manifest_path: str | Path,
    media_root: str | Path | None = None,
    subset: int | None = SUBSET_SIZE,
    seed: int = SUBSET_SEED,
) -> list[BenchmarkSample]:
    n = len(load_json_list(manifest_path))
    return read_question_answer(manifest_path, media_root, NAME, indices=seeded_subset(n, subset, seed))
