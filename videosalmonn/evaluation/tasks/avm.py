"""AVM: audio-visual matching, "does the audio belong with the picture?", yes/no exact-match accuracy
(paper Table 1: SpokenCOCO + VGGSS, 1,000; video-SALMONN 13B: 79.7%, Tables 3 and 12).

SAVEBench `audiovisualmatching_combined.json`: 1,000 objects {"image": [visual, audio], "question",
"answer": "Yes"/"No", "text": the caption/label the audio was made from}:
* 500 VGGSS: a VGGSound .mp4 + .wav, "Is the audio compatible with the video?"  -> group "vggss"
* 500 SpokenCOCO: a COCO val2014 .jpg + a spoken caption .wav, one of three questions -> group "spokencoco"
(506 Yes / 494 No). The prompt is the manifest question; App. J notes the benchmark prompt asks for no
explanation, so the answer must be exactly Yes or No (metrics.avm_correct). Accuracy is also reported per
group. Media resolve against `media_root`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from videosalmonn.evaluation.metrics import MetricResult, avm_correct
from videosalmonn.evaluation.tasks.common import SAVEBENCH_SOURCE, Sample, Task, accuracy_results, read_question_answer

MANIFEST = "audiovisualmatching_combined.json"


def read(manifest_path: str | Path, media_root: str | Path | None = None) -> list[Sample]:
    return read_question_answer(manifest_path, media_root, "avm",
                                group=lambda media: "vggss" if "video" in media else "spokencoco")


def score(sample: Sample, prediction: str) -> float:
    return float(avm_correct(prediction, sample.references[0]))


def aggregate(samples: Sequence[Sample], predictions: Sequence[str],
              scores: Sequence[float | None] | None = None) -> list[MetricResult]:
    return accuracy_results("accuracy", samples, predictions, score, scores)


TASK = Task(
    name="avm",
    title="AVM (SpokenCOCO + VGGSS)",
    paper_metric="accuracy",
    paper_value=0.797,
    source=f"{SAVEBENCH_SOURCE}; media: VGG-Sound Source clips (as for AVSSD), COCO val2014 images "
           "(https://cocodataset.org) and SpokenCOCO val wavs "
           "(https://groups.csail.mit.edu/sls/downloads/placesaudio/)",
    default_manifest=MANIFEST,
    read=read,
    score=score,
    aggregate=aggregate,
)
