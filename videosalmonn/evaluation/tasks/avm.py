"""AVM: audio-visual matching, "does the audio belong with the picture?", yes/no exact-match accuracy
(paper Table 1: SpokenCOCO + VGGSS, 1,000; video-SALMONN 13B: 79.7%, Tables 3 and 12).

Samples: data/save/avm.py (groups "vggss" and "spokencoco"). App. J notes the benchmark prompt asks for no
explanation, so the answer must be exactly Yes or No (metrics.avm_correct). Accuracy is also reported per group.
"""

from __future__ import annotations

from collections.abc import Sequence

from videosalmonn.data.save import avm
from videosalmonn.data.save.common import BenchmarkSample
from videosalmonn.evaluation.metrics import MetricResult, avm_correct
from videosalmonn.evaluation.tasks.common import SAVEBENCH_SOURCE, Task, accuracy_results


def score(sample: BenchmarkSample, prediction: str) -> float:
    return float(avm_correct(prediction, sample.references[0]))


def aggregate(
    samples: Sequence[BenchmarkSample], predictions: Sequence[str], scores: Sequence[float | None] | None = None
) -> list[MetricResult]:
    return accuracy_results("accuracy", samples, predictions, score, scores)


TASK = Task(
    name=avm.NAME,
    title="AVM (SpokenCOCO + VGGSS)",
    paper_metric="accuracy",
    paper_value=0.797,
    source=f"{SAVEBENCH_SOURCE}; media: VGG-Sound Source clips (as for AVSSD), COCO val2014 images "
    "(https://cocodataset.org) and SpokenCOCO val wavs "
    "(https://groups.csail.mit.edu/sls/downloads/placesaudio/)",
    default_manifest=avm.MANIFEST,
    read=avm.read,
    score=score,
    aggregate=aggregate,
)
