"""VQA: GQA test-dev balanced, 1,000 questions drawn with a fixed seed, containment accuracy
(paper Table 1; video-SALMONN 13B: 44.8%, Table 2).

SAVEBench `testdev_balanced_questions_with_images.json`: 12,577 objects {"image": "<id>.jpg", "question",
"answer": short answer, "fullanswer": sentence}. (image, question) is not unique (12,569 distinct pairs),
so sample ids are the manifest index. Table 1 uses 1,000 random samples; ours are
`seeded_subset(12577, 1000, seed=SUBSET_SEED)`. The prompt is the question verbatim; the short "answer" is
the reference (App. C: correct if it occurs word by word in the generated answer, and for yes/no questions
the opposite word does not). Images resolve against `media_root` (GQA's images/).
"""

from __future__ import annotations

from pathlib import Path

from videosalmonn.evaluation.tasks.common import (
    SAVEBENCH_SOURCE,
    SUBSET_SEED,
    Sample,
    Task,
    load_json_list,
    read_question_answer,
    seeded_subset,
)
from videosalmonn.evaluation.tasks.scoring import containment_aggregate, containment_score

MANIFEST = "testdev_balanced_questions_with_images.json"
SUBSET_SIZE = 1000


def read(manifest_path: str | Path, media_root: str | Path | None = None, subset: int | None = SUBSET_SIZE,
         seed: int = SUBSET_SEED) -> list[Sample]:
    n = len(load_json_list(manifest_path))
    return read_question_answer(manifest_path, media_root, "vqa", indices=seeded_subset(n, subset, seed))



TASK = Task(
    name="vqa",
    title="VQA (GQA test-dev balanced, 1k subset)",
    paper_metric="accuracy",
    paper_value=0.448,
    source=f"{SAVEBENCH_SOURCE}; images: GQA images.zip (https://cs.stanford.edu/people/dorarad/gqa/download.html)",
    default_manifest=MANIFEST,
    read=read,
    score=containment_score,
    aggregate=containment_aggregate,
)
