"""OCR: TextVQA, 1,000 questions drawn with a fixed seed, TextVQA accuracy (paper Table 1; 13B: 37.8%).

SAVEBench `textvqa.json`: 5,000 objects {"dataset": "textvqa", "image": "<id>.jpg", "question", "answer":
[10 human answers]} (the TextVQA 0.5.1 *val* questions: test answers are not public, although Table 1 says
"test"). Table 1 evaluates 1,000 randomly drawn samples; the paper's draw is unpublished, ours is
`seeded_subset(5000, 1000, seed=SUBSET_SEED)` (sample ids keep the manifest index). The prompt is the
question verbatim (App. A: "What is the brand of this camera?"). Images resolve against `media_root`
(TextVQA's train_val_images/train_images/).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from videosalmonn.evaluation.metrics import MetricResult, textvqa_accuracy
from videosalmonn.evaluation.tasks.common import (
    SAVEBENCH_SOURCE,
    SUBSET_SEED,
    Sample,
    Task,
    accuracy_results,
    load_json_list,
    read_question_answer,
    seeded_subset,
)

MANIFEST = "textvqa.json"
SUBSET_SIZE = 1000


def read(manifest_path: str | Path, media_root: str | Path | None = None, subset: int | None = SUBSET_SIZE,
         seed: int = SUBSET_SEED) -> list[Sample]:
    n = len(load_json_list(manifest_path))
    return read_question_answer(manifest_path, media_root, "ocr", indices=seeded_subset(n, subset, seed))


def score(sample: Sample, prediction: str) -> float:
    """TextVQA soft accuracy against the 10 human answers (metrics.textvqa_accuracy, leave-one-out)."""
    return textvqa_accuracy(prediction, sample.references)


def aggregate(samples: Sequence[Sample], predictions: Sequence[str],
              scores: Sequence[float | None] | None = None) -> list[MetricResult]:
    return accuracy_results("accuracy", samples, predictions, score, scores)


TASK = Task(
    name="ocr",
    title="OCR (TextVQA, 1k subset)",
    paper_metric="accuracy",
    paper_value=0.378,
    source=f"{SAVEBENCH_SOURCE}; images: TextVQA train_val_images (https://textvqa.org/dataset)",
    default_manifest=MANIFEST,
    read=read,
    score=score,
    aggregate=aggregate,
)
