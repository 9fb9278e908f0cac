"""AVSSD: audio-visual sound source detection on VGGSS, judged accuracy (paper Table 1: 850 clips;
SAVEBench has 847; video-SALMONN 13B: 47.6%, Tables 3 and 12). Samples: data/save/vggss.py.

Scoring (App. C, D): an LLM judges whether the answer names the same sound source as the reference, with
the App. D prompt. `with_judge(client)` builds that task; the registry's default `TASK` uses the offline
`string_match_judge` instead and says so in its metric name: its numbers are not the paper's metric.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from videosalmonn.data.save import vggss
from videosalmonn.data.save.common import BenchmarkSample
from videosalmonn.evaluation.judge import ChatClient, JudgeVerdict, judge_equivalent, string_match_judge
from videosalmonn.evaluation.metrics import MetricResult
from videosalmonn.evaluation.tasks.common import SAVEBENCH_SOURCE, Task, accuracy_results

Judge = Callable[[str, str, str], JudgeVerdict]  # (question, reference, hypothesis) -> verdict
FALLBACK_NAME = "accuracy (string-match fallback, not the paper's LLM judge)"
LLM_NAME = "accuracy (LLM judge, App. D prompt)"


def make_task(judge: Judge, metric_name: str) -> Task:
    """The AVSSD task scored by `judge` (chosen once, here)."""

    def score(sample: BenchmarkSample, prediction: str) -> float:
        return float(judge(sample.question, sample.references[0], prediction).equivalent)

    def aggregate(
        samples: Sequence[BenchmarkSample], predictions: Sequence[str], scores: Sequence[float | None] | None = None
    ) -> list[MetricResult]:
        return accuracy_results(metric_name, samples, predictions, score, scores)

    return replace(TASK, score=score, aggregate=aggregate)


def with_judge(client: ChatClient) -> Task:
    """AVSSD judged by a chat model through `client` (e.g. judge.OpenAIChatClient), as in the paper."""
    return make_task(lambda q, ref, hyp: judge_equivalent(q, ref, hyp, client), LLM_NAME)


def _fallback_score(sample: BenchmarkSample, prediction: str) -> float:
    return float(string_match_judge(sample.question, sample.references[0], prediction).equivalent)


def _fallback_aggregate(
    samples: Sequence[BenchmarkSample], predictions: Sequence[str], scores: Sequence[float | None] | None = None
) -> list[MetricResult]:
    note = "heuristic string matching of the sound-source label; use an LLM judge for paper-comparable numbers"
    return accuracy_results(FALLBACK_NAME, samples, predictions, _fallback_score, scores, note=note)


TASK = Task(
    name=vggss.NAME,
    title="AVSSD (VGGSS)",
    paper_metric="accuracy (ChatGPT judge)",
    paper_value=0.476,
    source=f"{SAVEBENCH_SOURCE}; videos: VGG-Sound Source test clips (https://www.robots.ox.ac.uk/~vgg/research/lvs/, "
    "VGGSound videos https://www.robots.ox.ac.uk/~vgg/data/vggsound/) with their .wav tracks",
    default_manifest=vggss.MANIFEST,
    read=vggss.read,
    score=_fallback_score,
    aggregate=_fallback_aggregate,
)
