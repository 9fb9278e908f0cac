"""Answer every sample of a manifest in batches, into a resumable JSONL file (`videosalmonn infer --manifest`).

Any failure of one sample (a bad media file, a prompt the tokenizer refuses, MemoryError, a library's bug) fails
only that sample: its record carries `error` and `attempts`, and the run goes on. A killed run continues where it
stopped: samples answered in the output are skipped, failed ones are tried again (a new record is appended; the
last success, else the last error, is the sample's result) until they have failed `results.MAX_ATTEMPTS` times,
after which they are reported as given up.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from tqdm import tqdm

from videosalmonn.config import GenerationConfig
from videosalmonn.data.manifest import Sample
from videosalmonn.errors import VideoSalmonnError
from videosalmonn.pipeline import Answer, Pipeline, Request
from videosalmonn.results import MAX_ATTEMPTS, ResultsFile

log = logging.getLogger(__name__)


@dataclass
class InferSummary:
    answered: int = 0
    failed: int = 0  # failed in this run
    skipped: int = 0  # already answered in the output file (resumed run)
    given_up: list[str] = field(default_factory=list)  # ids that failed MAX_ATTEMPTS times: not run again

    @property
    def unanswered(self) -> int:
        """Samples without an answer after this run (failed now, or given up)."""
        return self.failed + len(self.given_up)


def run_manifest(
    pipe: Pipeline,
    samples: list[Sample],
    out: str,
    batch_size: int = 8,
    generation: GenerationConfig | None = None,
    progress: bool = True,
    max_attempts: int = MAX_ATTEMPTS,
) -> InferSummary:
    results = ResultsFile(out)
    done, failures = results.done(), results.failures()
    pending = [s for s in samples if s.id not in done]
    todo = [s for s in pending if failures.get(s.id, 0) < max_attempts]
    summary = InferSummary(
        skipped=len(samples) - len(pending), given_up=[s.id for s in pending if failures.get(s.id, 0) >= max_attempts]
    )
    with tqdm(total=len(todo), desc="answering", unit="sample", disable=not progress) as bar:  # closed before an error
        for i in range(0, len(todo), batch_size):
            chunk = todo[i : i + batch_size]
            for record in answer_samples(pipe, chunk, generation):
                results.append(with_attempts(record, failures))
                summary.failed += "error" in record
                summary.answered += "error" not in record
            bar.update(len(chunk))
    return summary


def answer_samples(pipe: Pipeline, samples: list[Sample], generation: GenerationConfig | None) -> list[dict]:
    """Records in input order; a sample that failed has `error` instead of an answer (see `answer_requests`)."""
    results = answer_requests(pipe, [s.to_request() for s in samples], generation)
    return [_error(s, r) if isinstance(r, Exception) else _record(s, r) for s, r in zip(samples, results)]


def answer_requests(
    pipe: Pipeline, requests: list[Request], generation: GenerationConfig | None
) -> list[Answer | Exception]:
    """Each request's Answer, or the exception that failed it (any Exception, MemoryError included: one sample
    never stops a run), in input order. Media are decoded first (a bad file fails alone); if the batch cannot be
    generated together (one prompt too long, a prompt the tokenizer refuses, out of memory), every request is
    retried alone."""
    results: dict[int, Answer | Exception] = {}
    ok, clips = [], []
    for i, r in enumerate(requests):
        try:
            clips.append(pipe.load(r))
            ok.append(i)
        except Exception as e:
            results[i] = _logged(e)
    alone = False
    try:
        answers = pipe.answer_batch([requests[i] for i in ok], generation, clips) if ok else []
        results.update(zip(ok, answers))
    except Exception as e:
        alone = len(ok) > 1  # retried outside this block: the failed batch's frames (its tensors) are freed first
        if not alone:
            results[ok[0]] = _logged(e)
    if alone:
        for i, clip in zip(ok, clips):
            try:
                results[i] = pipe.answer_batch([requests[i]], generation, [clip])[0]
            except Exception as e:
                results[i] = _logged(e)
    return [results[i] for i in range(len(requests))]


def error_text(error: BaseException) -> str:
    """One line for a sample's `error`: our own errors as they read; anything else with its type."""
    if isinstance(error, VideoSalmonnError):
        return str(error)
    if isinstance(error, MemoryError):
        return "out of memory (MemoryError)"
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300]}" if text else type(error).__name__


def with_attempts(record: dict, failures: dict[str, int]) -> dict:
    """A failed record with `attempts`: the failures of its sample so far, this one included."""
    return {**record, "attempts": failures.get(str(record["id"]), 0) + 1} if "error" in record else record


def _logged(error: Exception) -> Exception:
    """The error, logged with its traceback (shown with -v) unless it is ours, then without it (it would keep the
    failed call's frames and tensors alive)."""
    if not isinstance(error, VideoSalmonnError):
        log.info("a sample failed: %s", error_text(error), exc_info=error)
    return error.with_traceback(None)


def _record(sample: Sample, answer) -> dict:
    out = {"id": sample.id, "prompt": sample.prompt_turns[-1].text, **answer.to_json()}
    if sample.answer is not None:
        out["reference"] = sample.answer
    if sample.task is not None:
        out["task"] = sample.task
    return out


def _error(sample: Sample, error: Exception) -> dict:
    return {"id": sample.id, "prompt": sample.prompt_turns[-1].text, "error": error_text(error)}
