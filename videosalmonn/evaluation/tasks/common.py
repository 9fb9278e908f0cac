"""What every SAVE task shares: the `Task` record and the accuracy helpers. The samples and their readers are
data (videosalmonn/data/save/); a task adds how to score them.

A task file defines two pure functions and one `TASK = Task(...)` around its reader's `read`:
    read(manifest_path, media_root) -> list[BenchmarkSample]    (data/save/<task>.py)
    score(sample, prediction) -> float | None                one sample's score (None: corpus-only metric)
    aggregate(samples, predictions, scores=None) -> [MetricResult, ...]   the paper's number first
`scores` lets a resumable runner pass per-sample scores it already has (e.g. paid-for judge verdicts), so
they are not recomputed; corpus metrics (WER, CIDEr-D) ignore it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from videosalmonn.data.save.common import BenchmarkSample
from videosalmonn.errors import InputError
from videosalmonn.evaluation.bootstrap import bootstrap_ci
from videosalmonn.evaluation.metrics import MetricResult, accuracy

SAVEBENCH_SOURCE = "SAVEBench manifests: https://huggingface.co/datasets/tsinghua-ee/SAVEBench"


Reader = Callable[..., list[BenchmarkSample]]
Scorer = Callable[[BenchmarkSample, str], "float | None"]
Aggregator = Callable[..., list[MetricResult]]


@dataclass(frozen=True)
class Task:
    """A SAVE task: metadata (what the paper reports, where the data comes from) plus its three functions.

    `paper_value` is the video-SALMONN 13B result (Tables 2, 3, 12 and App. G) in `MetricResult` units
    (0.026 for 2.6% WER, 0.896 for CIDEr 89.6); None where the paper gives none. `default_manifest` is a
    file name inside the SAVEBench folder (None: the dataset's own layout, see `source`).
    """

    name: str
    title: str
    paper_metric: str
    paper_value: float | None
    source: str
    default_manifest: str | None
    read: Reader
    score: Scorer
    aggregate: Aggregator
    lower_is_better: bool = False


# ---------------------------------------------------------------------------------------------------------
# Aggregation helpers


def check_aligned(
    samples: Sequence[BenchmarkSample], predictions: Sequence[str], scores: Sequence[float | None] | None = None
) -> None:
    if len(samples) != len(predictions):
        raise InputError(f"{len(samples)} samples but {len(predictions)} predictions")
    if scores is not None and len(scores) != len(samples):
        raise InputError(f"{len(samples)} samples but {len(scores)} scores")


def accuracy_results(
    name: str,
    samples: Sequence[BenchmarkSample],
    predictions: Sequence[str],
    score: Scorer,
    scores: Sequence[float | None] | None = None,
    note: str = "",
) -> list[MetricResult]:
    """Overall accuracy (mean score, with a 95% bootstrap CI in `details`), then one per `group` if several."""
    check_aligned(samples, predictions, scores)
    values = [
        float(s) if s is not None else float(score(x, p))
        for x, p, s in zip(samples, predictions, scores or [None] * len(samples))
    ]
    results = [_with_ci(accuracy(name, values, note))]
    groups = sorted({x.group for x in samples})
    if len(groups) > 1:
        for g in groups:
            part = [v for x, v in zip(samples, values) if x.group == g]
            results.append(_with_ci(accuracy(f"{name} [{g}]", part, note)))
    return results


def _with_ci(result: MetricResult) -> MetricResult:
    low, high = bootstrap_ci(result.per_sample or ())
    return MetricResult(
        result.name,
        result.value,
        note=result.note,
        per_sample=result.per_sample,
        details={**result.details, "ci95_low": low, "ci95_high": high},
    )
