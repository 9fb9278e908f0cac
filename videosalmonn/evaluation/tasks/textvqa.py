"""OCR: TextVQA, 1,000 questions drawn with a fixed seed, TextVQA accuracy (paper Table 1; 13B: 37.8%).

Samples: data/save/textvqa.py (the seeded 1k subset of the val questions, 10 human answers each).
"""

from __future__ import annotations

from collections.abc import Sequence

from videosalmonn.data.save import textvqa
from videosalmonn.data.save.common import BenchmarkSample
from videosalmonn.evaluation.metrics import MetricResult, textvqa_accuracy
from videosalmonn.evaluation.tasks.common import SAVEBENCH_SOURCE, Task, accuracy_results


def score(sample: BenchmarkSample, prediction: str) -> float:
    """TextVQA soft accuracy against the 10 human answers (metrics.textvqa_accuracy, leave-one-out)."""
    return textvqa_accuracy(prediction, sample.references)


def aggregate(
    samples: Sequence[BenchmarkSample], predictions: Sequence[str], scores: Sequence[float | None] | None = None
) -> list[MetricResult]:
    return accuracy_results("accuracy", samples, predictions, score, scores)


TASK = Task(
    name=textvqa.NAME,
    title="OCR (TextVQA, 1k subset)",
    paper_metric="accuracy",
    paper_value=0.378,
    source=f"{SAVEBENCH_SOURCE}; images: TextVQA train_val_images (https://textvqa.org/dataset)",
    default_manifest=textvqa.MANIFEST,
    read=textvqa.read,
    score=score,
    aggregate=aggregate,
)
