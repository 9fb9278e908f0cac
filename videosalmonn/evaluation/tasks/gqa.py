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

from collections.abc import Sequence
from pathlib import Path

from videosalmonn.evaluation.metrics import MetricResult, containment_correct
from videosalmonn.evaluation.tasks.common import (SAVEBENCH_SOURCE, SUBSET_SEED, Sample, Task, accuracy_results, get,
                                                  load_json_list, media_fields, media_root_for, seeded_subset,
                                                  text_list)

MANIFEST = "testdev_balanced_questions_with_images.json"
SUBSET_SIZE = 1000


def read(manifest_path: str | Path, media_root: str | Path | None = None, subset: int | None = SUBSET_SIZE,
         seed: int = SUBSET_SEED) -> list[Sample]:
    root = media_root_for(manifest_path, media_root)
    entries = load_json_list(manifest_path)
    samples = []
    for i in seeded_subset(len(entries), subset, seed):
        entry, where = entries[i], f"{manifest_path}[{i}]"
        question = get(entry, "question", where=where)
        samples.append(Sample(id=f"vqa-{i:05d}", prompt=question, question=question,
                              references=text_list(get(entry, "answer", where=where), where),
                              **media_fields(get(entry, "image", "image_name", where=where), root, where)))
    return samples


def score(sample: Sample, prediction: str) -> float:
    return float(containment_correct(prediction, sample.references[0]))


def aggregate(samples: Sequence[Sample], predictions: Sequence[str],
              scores: Sequence[float | None] | None = None) -> list[MetricResult]:
    return accuracy_results("accuracy", samples, predictions, score, scores)


TASK = Task(
    name="vqa",
    title="VQA (GQA test-dev balanced, 1k subset)",
    paper_metric="accuracy",
    paper_value=0.448,
    source=f"{SAVEBENCH_SOURCE}; images: GQA images.zip (https://cs.stanford.edu/people/dorarad/gqa/download.html)",
    default_manifest=MANIFEST,
    read=read,
    score=score,
    aggregate=aggregate,
)
