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
from videosalmonn.pipeline import Pipeline, Request
from videosalmonn.results import ResultsFile


@dataclass
class RunSummary:
    answered: int = 0
    failed: int = 0
    skipped: int = 0                      # already in the output file (resumed run)


def request_of(sample: Sample, with_answer: bool = False) -> Request:
    turns = sample.conversation if with_answer else sample.prompt_turns
    return Request(prompt=tuple(turns), video=sample.video, audio=sample.audio, image=sample.image,
                   start=sample.start, end=sample.end, video_audio=sample.video_audio)


def run_manifest(pipe: Pipeline, samples: list[Sample], out: str, batch_size: int = 8,
                 generation: GenerationConfig | None = None, progress: bool = True) -> RunSummary:
    results = ResultsFile(out)
    done = results.done()
    todo = [s for s in samples if s.id not in done]
    summary = RunSummary(skipped=len(samples) - len(todo))
    bar = tqdm(total=len(todo), desc="answering", unit="sample", disable=not progress)
    for i in range(0, len(todo), batch_size):
        chunk = todo[i:i + batch_size]
        for record in answer_samples(pipe, chunk, generation):
            results.append(record)
            summary.failed += "error" in record
            summary.answered += "error" not in record
        bar.update(len(chunk))
    bar.close()
    return summary


def answer_samples(pipe: Pipeline, samples: list[Sample], generation: GenerationConfig | None) -> list[dict]:
    """Records in input order. Media are decoded first (a bad file fails alone); if the batch cannot be
    generated together (e.g. one prompt too long), every sample is retried alone."""
    records: dict[str, dict] = {}
    ok, clips = [], []
    for s in samples:
        try:
            clips.append(pipe.load(request_of(s)))
            ok.append(s)
        except VideoSalmonnError as e:
            records[s.id] = _error(s, e)
    try:
        answers = pipe.answer_batch([request_of(s) for s in ok], generation, clips) if ok else []
        records.update({s.id: _record(s, a) for s, a in zip(ok, answers)})
    except VideoSalmonnError:
        for s, clip in zip(ok, clips):
            try:
                records[s.id] = _record(s, pipe.answer_batch([request_of(s)], generation, [clip])[0])
            except VideoSalmonnError as e:
                records[s.id] = _error(s, e)
    return [records[s.id] for s in samples]


def _record(sample: Sample, answer) -> dict:
    out = {"id": sample.id, "prompt": sample.prompt_turns[-1].text, **answer.to_json()}
    if sample.answer is not None:
        out["reference"] = sample.answer
    if sample.task is not None:
        out["task"] = sample.task
    return out


def _error(sample: Sample, error: Exception) -> dict:
    return {"id": sample.id, "prompt": sample.prompt_turns[-1].text, "error": str(error)}
