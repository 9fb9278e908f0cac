"""Scorers shared by several tasks: WER (ASR, AVSR), captions (AAC, IC, AVSD), multiple choice (Video QA,
AVQA), word containment (VQA, MUSIC-AVQA). Each is a `score(sample, prediction)` /
`aggregate(samples, predictions, scores=None)` pair."""

from __future__ import annotations

from collections.abc import Sequence

from videosalmonn.data.save.common import BenchmarkSample
from videosalmonn.evaluation.metrics import (
    MetricResult,
    cider_d,
    combine_spider,
    containment_correct,
    multiple_choice_correct,
    spice,
    wer,
    wer_ci_from_counts,
    wer_counts,
)
from videosalmonn.evaluation.tasks.common import accuracy_results, check_aligned

# ---------------------------------------------------------------------------------------------------------
# WER


def wer_score(sample: BenchmarkSample, prediction: str) -> float:
    """This utterance's errors / max(its reference words, 1), after Whisper's English normaliser."""
    errors, words, _ = wer_counts([sample.references[0]], [prediction])
    return float(errors[0]) / max(int(words[0]), 1)


def wer_aggregate(
    samples: Sequence[BenchmarkSample], predictions: Sequence[str], scores: Sequence[float | None] | None = None
) -> list[MetricResult]:
    """Corpus WER = total (S + D + I) / total reference words, with a 95% CI from resampling utterances."""
    check_aligned(samples, predictions, scores)
    references = [s.references[0] for s in samples]
    result = wer(references, predictions)
    errors, words, _ = wer_counts(references, predictions)
    low, high = wer_ci_from_counts(errors, words)
    return [
        MetricResult(
            result.name,
            result.value,
            note=result.note,
            per_sample=result.per_sample,
            details={**result.details, "ci95_low": low, "ci95_high": high},
        )
    ]


# ---------------------------------------------------------------------------------------------------------
# Captions


def corpus_only(sample: BenchmarkSample, prediction: str) -> None:
    """CIDEr-D and SPICE have no stand-alone per-sample value (CIDEr-D's IDF comes from the whole evaluated
    set), so there is nothing to score per sample; `aggregate` reports each sample's value within the set."""
    return None


def cider_aggregate(
    samples: Sequence[BenchmarkSample], predictions: Sequence[str], scores: Sequence[float | None] | None = None
) -> list[MetricResult]:
    """CIDEr-D over the set (PTB tokenisation when Java is present)."""
    check_aligned(samples, predictions, scores)
    return [cider_d([s.references for s in samples], list(predictions))]


def spider_aggregate(
    samples: Sequence[BenchmarkSample], predictions: Sequence[str], scores: Sequence[float | None] | None = None
) -> list[MetricResult]:
    """[SPIDEr, CIDEr-D, SPICE]; SPIDEr and SPICE are "unavailable" (value None) without CoreNLP."""
    check_aligned(samples, predictions, scores)
    references, hypotheses = [s.references for s in samples], list(predictions)
    cider = cider_d(references, hypotheses)
    spice_result = spice(references, hypotheses)
    return [combine_spider(cider, spice_result), cider, spice_result]


# ---------------------------------------------------------------------------------------------------------
# Multiple choice


def choice_score(sample: BenchmarkSample, prediction: str) -> float:
    """1.0 iff the answer is exactly the reference option (metrics.multiple_choice_correct)."""
    return float(multiple_choice_correct(prediction, sample.references[0], sample.candidates))


def choice_aggregate(
    samples: Sequence[BenchmarkSample], predictions: Sequence[str], scores: Sequence[float | None] | None = None
) -> list[MetricResult]:
    return accuracy_results("accuracy", samples, predictions, choice_score, scores)


# ---------------------------------------------------------------------------------------------------------
# Word containment


def containment_score(sample: BenchmarkSample, prediction: str) -> float:
    """1.0 iff the reference occurs word by word in the answer, and for yes/no not its opposite (App. C)."""
    return float(containment_correct(prediction, sample.references[0]))


def containment_aggregate(
    samples: Sequence[BenchmarkSample], predictions: Sequence[str], scores: Sequence[float | None] | None = None
) -> list[MetricResult]:
    return accuracy_results("accuracy", samples, predictions, containment_score, scores)
