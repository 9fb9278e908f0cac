"""Answer every sample of a manifest in batches, into a resumable JSONL file (`videosalmonn infer --manifest`).

One bad media file fails only its own sample (its record carries `error`); a killed run continues where it
stopped (samples already in the output are skipped).
"""

from __future__ import annotations

from dataclasses import dataclass

from tqdm import tqdm

from videosalmonn.config import GenerationConfig
from videosalmonn.data.manifest import Sample
from videosalmonn.errors import VideoSalmonnError
from videosalmonn.pipeline import Answer, Pipeline, Request
from videosalmonn.results import ResultsFile


@dataclass
class InferSummary:
    answered: int = 0
    failed: int = 0
    skipped: int = 0  # already in the output file (resumed run)


def run_manifest(
    pipe: Pipeline,
    samples: list[Sample],
    out: str,
    batch_size: int = 8,
    generation: GenerationConfig | None = None,
    progress: bool = True,
) -> InferSummary:
    results = ResultsFile(out)
    done = results.done()
    todo = [s for s in samples if s.id not in done]
    summary = InferSummary(skipped=len(samples) - len(todo))
    bar = tqdm(total=len(todo), desc="answering", unit="sample", disable=not progress)
    for i in range(0, len(todo), batch_size):
        chunk = todo[i : i + batch_size]
        for record in answer_samples(pipe, chunk, generation):
            results.append(record)
            summary.failed += "error" in record
            summary.answered += "error" not in record
        bar.update(len(chunk))
    bar.close()
    return summary


def answer_samples(pipe: Pipeline, samples: list[Sample], generation: GenerationConfig | None) -> list[dict]:
    """Records in input order; a sample that failed has `error` instead of an answer (see `answer_requests`)."""
    results = answer_requests(pipe, [s.to_request() for s in samples], generation)
    return [_error(s, r) if isinstance(r, VideoSalmonnError) else _record(s, r) for s, r in zip(samples, results)]


def answer_requests(
    pipe: Pipeline, requests: list[Request], generation: GenerationConfig | None
) -> list[Answer | VideoSalmonnError]:
    """Each request's Answer, or the error that failed it, in input order. Media are decoded first (a bad file
    fails alone); if the batch cannot be generated together (e.g. one prompt too long), every request is
    retried alone."""
    results: dict[int, Answer | VideoSalmonnError] = {}
    ok, clips = [], []
    for i, r in enumerate(requests):
        try:
            clips.append(pipe.load(r))
            ok.append(i)
        except VideoSalmonnError as e:
            results[i] = e
    try:
        answers = pipe.answer_batch([requests[i] for i in ok], generation, clips) if ok else []
        results.update(zip(ok, answers))
    except VideoSalmonnError:
        for i, clip in zip(ok, clips):
            try:
                results[i] = pipe.answer_batch([requests[i]], generation, [clip])[0]
            except VideoSalmonnError as e:
                results[i] = e
    return [results[i] for i in range(len(requests))]


def _record(sample: Sample, answer) -> dict:
    out = {"id": sample.id, "prompt": sample.prompt_turns[-1].text, **answer.to_json()}
    if sample.answer is not None:
        out["reference"] = sample.answer
    if sample.task is not None:
        out["task"] = sample.task
    return out


def _error(sample: Sample, error: Exception) -> dict:
    return {"id": sample.id, "prompt": sample.prompt_turns[-1].text, "error": str(error)}
